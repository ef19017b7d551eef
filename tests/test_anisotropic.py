from __future__ import annotations

import itertools

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
from gala.units import galactic
from scipy import integrate
from scipy.special import gamma, gammaln

from gala_deeppotential.mocks import CuddefordDF, EddingtonDF, anisotropy_profile

PLUMMER = gp.PlummerPotential(m=1.0, b=1.0, units=None)
HERNQUIST = gp.HernquistPotential(m=1.0, c=1.0, units=None)
ENERGIES = -np.linspace(0.05, 0.9, 40)


def _power_law_coefficient(n: float, beta: float) -> float:
    """F = A Q^(n - 3/2 + beta) is the DF of g(Psi) = Psi^n; returns A."""
    c_beta = 2 ** (1.5 - beta) * np.pi**1.5 * gamma(1 - beta) / gamma(1.5 - beta)
    return np.exp(
        gammaln(n + 1) - np.log(c_beta) - gammaln(n - 0.5 + beta) - gammaln(1.5 - beta)
    )


def _table_f(df, energy):
    return df._f_binding(df._phi_max - energy)


@pytest.mark.parametrize("r_a", [0.8, 1.0, 2.0])
def test_osipkov_merritt_plummer_f_is_exact(r_a):
    # nu_Q = (3/4 pi) [(1 - 1/r_a^2) Psi^5 + Psi^3 / r_a^2] (G = M = b = 1).
    q = -ENERGIES
    exact = (
        3
        / (4 * np.pi)
        * (
            (1 - r_a**-2) * _power_law_coefficient(5, 0) * q**3.5
            + _power_law_coefficient(3, 0) * q**1.5 / r_a**2
        )
    )
    df = CuddefordDF(PLUMMER, anisotropy_radius=r_a)
    assert np.max(np.abs(_table_f(df, ENERGIES) / exact - 1)) < 3e-4


def test_constant_beta_plummer_f_is_exact():
    # beta = -1/2: g = nu / r = (3/4 pi) Psi^6 (1 - Psi^2)^(-1/2), a series of
    # powers with coefficients C(2k, k) / 4^k.
    q = -ENERGIES
    exact, exact_slope = np.zeros_like(q), np.zeros_like(q)
    coefficient = 1.0
    for k in range(2000):
        n = 6 + 2 * k
        term = coefficient * _power_law_coefficient(n, -0.5) * 3 / (4 * np.pi)
        exact += term * q ** (n - 2)
        exact_slope += term * (n - 2) * q ** (n - 3)
        coefficient *= (2 * k + 1) / (2 * k + 2)
    df = CuddefordDF(PLUMMER, beta=-0.5)
    assert np.max(np.abs(_table_f(df, ENERGIES) / exact - 1)) < 3e-4
    # and d ln F / d ln Q, which grad_log_f uses: within 2e-3 of the series'.
    slope = np.interp(np.log(df._phi_max - ENERGIES), df._log_eps, df._dlogf_dlogeps)
    assert np.max(np.abs(slope / (exact_slope * q / exact) - 1)) < 2e-3


@pytest.mark.parametrize(
    ("potential", "beta", "r_a"), [(HERNQUIST, 0.25, 2.0), (PLUMMER, -1.0, None)]
)
def test_f_integrates_back_to_the_density(potential, beta, r_a):
    # rho(r) = c_beta r^(-2 beta) (1 + r^2/r_a^2)^(beta - 1)
    #          * int_0^Psi F(Q) (Psi - Q)^(1/2 - beta) dQ.
    df = CuddefordDF(potential, beta=beta, anisotropy_radius=r_a)
    c_beta = 2 * np.pi**1.5 * gamma(1 - beta) / gamma(1.5 - beta) * 2 ** (0.5 - beta)
    inv_ra2 = 0.0 if r_a is None else r_a**-2
    for r in [0.1, 0.5, 1.0, 3.0, 10.0]:
        point = np.array([[r], [0.0], [0.0]])
        psi = df._phi_max - potential.energy(point).value[0]
        integral = integrate.quad(
            lambda q, psi=psi: (
                df._f_binding(np.array([q]))[0] * (psi - q) ** (0.5 - beta)
            ),
            0,
            psi,
            limit=400,
        )[0]
        rho = c_beta * r ** (-2 * beta) * (1 + r**2 * inv_ra2) ** (beta - 1) * integral
        assert rho / potential.density(point).value[0] == pytest.approx(1, abs=3e-3)


def _jeans_sigma_r2(potential, beta, r_a):
    """sigma_r^2(r) on a radius grid from the spherical Jeans equation."""

    def at(method, r):
        return method(np.array([[r], [0.0], [0.0]])).value.ravel()[0]

    inv_ra2 = 0.0 if r_a is None else r_a**-2

    def weight(r):
        return r ** (2 * beta) * (1 + r**2 * inv_ra2) ** (1 - beta)

    grid = np.geomspace(1e-3, 1e3, 300)
    values = [
        integrate.quad(
            lambda s: at(potential.density, s) * weight(s) * at(potential.gradient, s),
            r,
            np.inf,
            limit=200,
        )[0]
        / (at(potential.density, r) * weight(r))
        for r in grid
    ]
    return grid, np.array(values)


@pytest.fixture(scope="module", params=[(0.0, 1.0), (-0.5, None)], ids=["om", "tan"])
def sampled(request):
    beta, r_a = request.param
    df = CuddefordDF(PLUMMER, beta=beta, anisotropy_radius=r_a)
    x, v = df.sample(2**16, seed=3)
    return df, x, v


def _radial_moments(x, v):
    r = np.linalg.norm(x, axis=1)
    v_r = np.sum(x * v, axis=1) / r
    return r, v_r, np.sum(v**2, axis=1) - v_r**2


def _bins(r):
    return itertools.pairwise(np.quantile(r, [0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98]))


def test_sample_follows_the_jeans_equation(sampled):
    # <v_r^2> / sigma_r^2(r) in six radial bins; the sampler's draws scatter
    # by up to 1.9 of their standard errors (seeds 3, 11, 12).
    df, x, v = sampled
    grid, sigma_r2 = _jeans_sigma_r2(PLUMMER, df.beta, df.anisotropy_radius)
    r, v_r, _ = _radial_moments(x, v)
    ratio = v_r**2 / np.interp(np.log(r), np.log(grid), sigma_r2)
    for lo, hi in _bins(r):
        z = ratio[(r >= lo) & (r < hi)]
        assert abs(np.mean(z) - 1) < 4 * np.std(z) / np.sqrt(z.size), (lo, hi)


def test_sample_has_the_anisotropy_profile(sampled):
    # beta = 1 - <v_t^2> / (2 <v_r^2>) per bin against beta(r) averaged over
    # the bin's stars (the ratio of means): within 0.04 of it.
    df, x, v = sampled
    grid, sigma_r2 = _jeans_sigma_r2(PLUMMER, df.beta, df.anisotropy_radius)
    r, v_r, v_t2 = _radial_moments(x, v)
    s2 = np.interp(np.log(r), np.log(grid), sigma_r2)
    expected_t2 = 2 * s2 * (1 - anisotropy_profile(r, df.beta, df.anisotropy_radius))
    for lo, hi in _bins(r):
        pick = (r >= lo) & (r < hi)
        beta = 1 - np.mean(v_t2[pick]) / (2 * np.mean(v_r[pick] ** 2))
        expected = 1 - np.mean(expected_t2[pick]) / (2 * np.mean(s2[pick]))
        assert beta == pytest.approx(expected, abs=0.04), (lo, hi)


def test_isotropic_jeans_prediction_rejects_the_radial_sample():
    # The Jeans test above has the power to tell an anisotropic sample from an
    # isotropic one: the isotropic sigma_r^2 misses the OM sample's.
    df = CuddefordDF(PLUMMER, anisotropy_radius=1.0)
    x, v = df.sample(2**16, seed=3)
    grid, sigma_r2 = _jeans_sigma_r2(PLUMMER, 0.0, None)
    r, v_r, _ = _radial_moments(x, v)
    ratio = v_r**2 / np.interp(np.log(r), np.log(grid), sigma_r2)
    outer = r > np.quantile(r, 0.7)
    assert np.mean(ratio[outer]) > 1.3


def test_isotropic_limit_is_eddington():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    v = 0.2 * rng.normal(size=(50, 3))
    cudd, edd = CuddefordDF(PLUMMER), EddingtonDF(PLUMMER)
    np.testing.assert_allclose(cudd.log_f(x, v), edd.log_f(x, v), rtol=1e-9)
    for a, b in zip(cudd.grad_log_f(x, v), edd.grad_log_f(x, v), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("potential", "beta", "r_a"),
    [(PLUMMER, 0.0, 1.0), (PLUMMER, -0.5, None), (HERNQUIST, 0.25, 2.0)],
)
def test_grad_log_f_matches_finite_differences(potential, beta, r_a):
    df = CuddefordDF(potential, beta=beta, anisotropy_radius=r_a)
    x, v = df.sample(400, seed=4)
    # Checks the geometry of the gradients (the Q and L^2 terms) to 2%: ln F
    # is linear between the table's nodes, where its slope is interpolated
    # between the nodes' slopes (checked against a series above), and they
    # differ by up to 1.2% where d ln F / d ln Q changes fast. Orbits close
    # to radial (L^2 < 1% of r^2 v^2) are left out: there beta ln L^2 is
    # too curved for the finite difference.
    _, l2 = df.invariants(x, v)
    keep = l2 > 0.01 * np.sum(x**2, axis=1) * np.sum(v**2, axis=1)
    x, v = x[keep], v[keep]
    grad_x, grad_v = df.grad_log_f(x, v)
    step = 1e-5
    num_x, num_v = np.empty_like(x), np.empty_like(v)
    for k in range(3):
        d = np.zeros(3)
        d[k] = step
        num_x[:, k] = (df.log_f(x + d, v) - df.log_f(x - d, v)) / (2 * step)
        num_v[:, k] = (df.log_f(x, v + d) - df.log_f(x, v - d)) / (2 * step)
    for grad, num in [(grad_x, num_x), (grad_v, num_v)]:
        error = np.linalg.norm(grad - num, axis=1) / np.linalg.norm(num, axis=1)
        assert np.max(error) < 2e-2


@pytest.mark.parametrize(("beta", "r_a"), [(0.0, 1.0), (-0.5, None), (0.25, 2.0)])
def test_gradients_are_stationary_in_the_true_potential(beta, r_a):
    # f(Q, L) is stationary: v . grad_x ln f - grad Phi . grad_v ln f = 0.
    df = CuddefordDF(HERNQUIST, beta=beta, anisotropy_radius=r_a)
    x, v = df.sample(1000, seed=5)
    grad_x, grad_v = df.grad_log_f(x, v)
    grad_phi = HERNQUIST.gradient(x.T).value.T
    residual = np.sum(v * grad_x, axis=1) - np.sum(grad_phi * grad_v, axis=1)
    scale = np.sum(np.abs(v * grad_x), axis=1)
    assert np.max(np.abs(residual) / scale) < 1e-9


def test_physical_units():
    halo = gp.PlummerPotential(m=1e11 * u.Msun, b=2 * u.kpc, units=galactic)
    a = CuddefordDF(halo, anisotropy_radius=2 * u.kpc)
    b = CuddefordDF(halo, anisotropy_radius=2.0)
    assert a.anisotropy_radius == b.anisotropy_radius == 2.0
    x, v = a.sample(500, seed=1)
    w = a.to_phase_space_position(x, v)
    assert w.xyz.unit == u.kpc and w.shape == (500,)
    # Velocities scale as sqrt(GM/b): ~ 100-300 km/s.
    speed = np.median(np.linalg.norm(w.v_xyz.to_value(u.km / u.s), axis=0))
    assert 50 < speed < 300


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 1.0}, "beta must be a finite number below 1"),
        ({"beta": np.nan}, "beta must be a finite number below 1"),
        ({"anisotropy_radius": 0.0}, "anisotropy_radius must be a positive length"),
        ({"anisotropy_radius": 0.5}, r"f < 0 .* less radial model"),
        ({"beta": 0.3}, r"f < 0 .* less radial model"),
    ],
)
def test_bad_models_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CuddefordDF(PLUMMER, **kwargs)


def test_gradient_outside_the_df_is_refused():
    df = CuddefordDF(PLUMMER, anisotropy_radius=1.0)
    with pytest.raises(ValueError, match="Q <= 0"):
        df.grad_log_f(np.ones((1, 3)), np.ones((1, 3)))
    tangential = CuddefordDF(PLUMMER, beta=-0.5)
    with pytest.raises(ValueError, match="singular at L = 0"):
        tangential.grad_log_f(np.array([[0.5, 0, 0]]), np.array([[0.1, 0, 0]]))
