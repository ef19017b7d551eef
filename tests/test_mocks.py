from __future__ import annotations

import itertools

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
from gala.units import galactic
from scipy import integrate, stats

from gala_deeppotential.mocks import (
    EddingtonDF,
    PlummerTruth,
    eddington_sample,
    plummer_sample,
)

N = 2**16


@pytest.fixture(scope="module")
def unit_sample():
    w = plummer_sample(N, seed=42)
    return w.xyz.T.value, w.v_xyz.T.value


def _mean_within(values, expected, n_sigma=5.0):
    """The sample mean agrees with ``expected`` to ``n_sigma`` standard errors."""
    err = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - expected) < n_sigma * err, (values.mean(), expected)


def test_radii_follow_mass_profile(unit_sample):
    x, _ = unit_sample
    r = np.linalg.norm(x, axis=1)
    pvalue = stats.kstest(r, lambda r: r**3 / (1 + r**2) ** 1.5).pvalue
    assert pvalue > 1e-3


def test_radii_ks_rejects_a_wrong_profile(unit_sample):
    # The KS test above has the power to see a 5% error in the scale radius.
    x, _ = unit_sample
    r = np.linalg.norm(x, axis=1) * 1.05
    assert stats.kstest(r, lambda r: r**3 / (1 + r**2) ** 1.5).pvalue < 1e-6


def test_virial_means(unit_sample):
    x, v = unit_sample
    truth = PlummerTruth()
    _mean_within(0.5 * np.sum(v**2, axis=1), 3 * np.pi / 64)
    _mean_within(truth.phi(x), -3 * np.pi / 16)


def test_velocity_dispersion_profile(unit_sample):
    x, v = unit_sample
    r = np.linalg.norm(x, axis=1)
    edges = [0.0, 0.3, 0.6, 1.0, 1.5, 2.5, 5.0]
    for lo, hi in itertools.pairwise(edges):
        sel = (r >= lo) & (r < hi)
        # sigma^2 = <v_i^2> per axis; compare star by star with (1/6)(1+r^2)^-1/2
        # so that the radial gradient within a bin cancels.
        ratio = np.mean(v[sel] ** 2, axis=1) / ((1 + r[sel] ** 2) ** -0.5 / 6)
        _mean_within(ratio, 1.0)


def test_all_stars_bound(unit_sample):
    x, v = unit_sample
    assert np.all(PlummerTruth().energy(x, v) < 0)


def test_seed_reproducible():
    a = plummer_sample(100, seed=3)
    b = plummer_sample(100, seed=3)
    np.testing.assert_array_equal(a.xyz.value, b.xyz.value)
    np.testing.assert_array_equal(a.v_xyz.value, b.v_xyz.value)


def test_df_normalised():
    truth = PlummerTruth()

    def shell(v, r):
        lnf = truth.log_f(np.array([[r, 0, 0]]), np.array([[v, 0, 0]]))[0]
        return (4 * np.pi) ** 2 * r**2 * v**2 * np.exp(lnf)

    total, _ = integrate.dblquad(
        shell, 0, np.inf, 0, lambda r: np.sqrt(2) * (1 + r**2) ** -0.25
    )
    assert total == pytest.approx(1.0, rel=1e-6)


def test_grad_log_f_matches_finite_differences(unit_sample):
    x, v = (a[:200] for a in unit_sample)
    truth = PlummerTruth()
    gx, gv = truth.grad_log_f(x, v)
    h = 1e-6
    for i in range(3):
        dx = np.zeros(3)
        dx[i] = h
        fd_x = (truth.log_f(x + dx, v) - truth.log_f(x - dx, v)) / (2 * h)
        fd_v = (truth.log_f(x, v + dx) - truth.log_f(x, v - dx)) / (2 * h)
        np.testing.assert_allclose(gx[:, i], fd_x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gv[:, i], fd_v, rtol=1e-5, atol=1e-6)


def test_grad_log_f_refuses_unbound_points():
    with pytest.raises(ValueError, match="unbound"):
        PlummerTruth().grad_log_f(np.zeros((1, 3)), np.full((1, 3), 2.0))


def test_physical_units_match_gala():
    m, b = 1e11 * u.Msun, 3 * u.kpc
    truth = PlummerTruth(m=m, b=b, units=galactic)
    pot = truth.potential()
    w = plummer_sample(500, m=m, b=b, units=galactic, seed=7)
    assert w.xyz.unit == u.kpc
    x = w.xyz.T.value
    np.testing.assert_allclose(truth.phi(x), pot.energy(w.xyz).value, rtol=1e-12)
    np.testing.assert_allclose(
        truth.grad_phi(x), pot.gradient(w.xyz).value.T, rtol=1e-12
    )
    np.testing.assert_allclose(truth.density(x), pot.density(w.xyz).value, rtol=1e-10)
    np.testing.assert_allclose(
        truth.mass_enclosed(np.array([1.0, 3.0, 10.0])),
        pot.mass_enclosed([[1.0, 3.0, 10.0], [0, 0, 0], [0, 0, 0]] * u.kpc).value,
        rtol=1e-6,
    )
    # Same seed, same sphere: the physical sample is the unit one rescaled.
    unit = plummer_sample(500, seed=7)
    np.testing.assert_allclose(w.xyz.value, unit.xyz.value * 3, rtol=1e-12)
    v_scale = np.sqrt(truth.G * truth.m / truth.b)
    np.testing.assert_allclose(
        w.v_xyz.to_value(u.kpc / u.Myr), unit.v_xyz.value * v_scale, rtol=1e-12
    )
    assert np.all(truth.energy(x, w.v_xyz.T.to_value(u.kpc / u.Myr)) < 0)


def test_physical_df_normalisation_scales():
    m, b = 1e11 * u.Msun, 3 * u.kpc
    truth = PlummerTruth(m=m, b=b, units=galactic)
    unit = PlummerTruth()
    x, v = unit.sample(10, seed=1)
    vs = truth.velocity_scale
    # f transforms as a density in 6D: f_phys = f_unit / (b^3 vs^3).
    np.testing.assert_allclose(
        truth.log_f(3 * x, vs * v),
        unit.log_f(x, v) - 3 * np.log(3 * vs),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"m": 1 * u.Msun}, ValueError, "both m and b"),
        ({"m": 1 * u.Msun, "b": 1 * u.kpc}, ValueError, "physical unit system"),
        ({"m": 1 * u.kpc, "b": 1 * u.kpc, "units": galactic}, u.UnitTypeError, "mass"),
        ({"m": 1.0, "b": 1 * u.kpc, "units": galactic}, u.UnitTypeError, "mass"),
        ({"m": -1 * u.Msun, "b": 1 * u.kpc, "units": galactic}, ValueError, "positive"),
        ({"units": galactic}, ValueError, "dimensionless"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        PlummerTruth(**kwargs)


@pytest.mark.parametrize("n", [0, -5, 2.5])
def test_bad_sample_size(n):
    with pytest.raises(ValueError, match="positive integer"):
        plummer_sample(n)


# ---------------------------------------------------------------- Eddington

PLUMMER = gp.PlummerPotential(m=1.0, b=1.0, units=None)
HERNQUIST = gp.HernquistPotential(m=1.0, c=1.0, units=None)
ENERGIES = np.linspace(-0.999, -0.01, 500)


def hernquist_f(energy):
    """Hernquist (1990) eq. 17 for G = M = a = 1, normalised to unit mass."""
    q = np.sqrt(-energy)
    bracket = 3 * np.arcsin(q) + q * np.sqrt(1 - q**2) * (1 - 2 * q**2) * (
        8 * q**4 - 8 * q**2 - 3
    )
    return bracket / (1 - q**2) ** 2.5 / (np.sqrt(2) * (2 * np.pi) ** 3)


@pytest.fixture(scope="module")
def hernquist_sample():
    w = eddington_sample(HERNQUIST, None, N, seed=5)
    return w.xyz.T.value, w.v_xyz.T.value


def test_eddington_f_matches_plummer():
    exact = 24 * np.sqrt(2) / (7 * np.pi**3) * (-ENERGIES) ** 3.5
    error = np.max(np.abs(EddingtonDF(PLUMMER).f(ENERGIES) / exact - 1))
    assert error < 1e-3  # measured 3.9e-4
    # The error converges: measured 2.9e-3 at n_grid = 1024.
    coarse = EddingtonDF(PLUMMER, n_grid=1024).f(ENERGIES)
    assert 1.5e-3 < np.max(np.abs(coarse / exact - 1)) < 5e-3


def test_eddington_f_matches_hernquist():
    edd = EddingtonDF(HERNQUIST)
    error = np.max(np.abs(edd.f(ENERGIES) / hernquist_f(ENERGIES) - 1))
    assert error < 3e-4  # measured 1.1e-4 (truncation at 1e4 a leaves 2e-4 mass)
    assert edd.f(np.array([0.0, 0.5]))[0] == 0.0


def test_eddington_log_f_matches_plummer_truth(unit_sample):
    x, v = (a[:2000] for a in unit_sample)
    np.testing.assert_allclose(
        EddingtonDF(PLUMMER).log_f(x, v), PlummerTruth().log_f(x, v), atol=2e-3
    )


def test_eddington_grad_log_f_matches_plummer_truth(unit_sample):
    x, v = unit_sample
    grad_x, grad_v = EddingtonDF(PLUMMER).grad_log_f(x, v)
    exact_x, exact_v = PlummerTruth().grad_log_f(x, v)
    for grad, exact in ((grad_x, exact_x), (grad_v, exact_v)):
        error = np.linalg.norm(grad - exact, axis=1) / np.linalg.norm(exact, axis=1)
        assert error.max() < 5e-4  # measured 1.5e-4 over all 2^16 stars


def test_eddington_grad_log_f_matches_hernquist(hernquist_sample):
    x, v = hernquist_sample
    energy = HERNQUIST.energy(x.T).value + 0.5 * np.sum(v**2, axis=1)
    # Away from the truncation at r_max = 1e4 a (E > -1e-4), where the
    # truncated f falls to zero and its gradients part from eq. 17's.
    keep = energy < -0.01
    x, v, energy = x[keep], v[keep], energy[keep]
    h = 1e-7
    dlogf_de = np.log(hernquist_f(energy * (1 - h)) / hernquist_f(energy * (1 + h)))
    dlogf_de /= -2 * h * energy
    exact_x = dlogf_de[:, None] * HERNQUIST.gradient(x.T).value.T
    exact_v = dlogf_de[:, None] * v
    grad_x, grad_v = EddingtonDF(HERNQUIST).grad_log_f(x, v)
    for grad, exact in ((grad_x, exact_x), (grad_v, exact_v)):
        error = np.linalg.norm(grad - exact, axis=1) / np.linalg.norm(exact, axis=1)
        assert error.max() < 1e-4  # measured 1.2e-5
    with pytest.raises(ValueError, match="unbound"):
        EddingtonDF(HERNQUIST).grad_log_f(np.ones((1, 3)), np.ones((1, 3)))


def test_eddington_plummer_sample_matches_exact_sampler(unit_sample):
    w = eddington_sample(PLUMMER, None, N, seed=9)
    x, v = w.xyz.T.value, w.v_xyz.T.value
    x_ref, v_ref = unit_sample
    for a, b in ((x, x_ref), (v, v_ref)):
        norm, norm_ref = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        # measured p = 0.29 (r) and 0.90 (|v|)
        assert stats.ks_2samp(norm, norm_ref).pvalue > 1e-3
    _mean_within(0.5 * np.sum(v**2, axis=1), 3 * np.pi / 64)
    _mean_within(PlummerTruth().phi(x), -3 * np.pi / 16)
    _mean_within(np.mean(v**2, axis=1) * 6 * np.sqrt(1 + np.sum(x**2, axis=1)), 1.0)


def test_eddington_hernquist_radii_follow_mass_profile(hernquist_sample):
    r = np.linalg.norm(hernquist_sample[0], axis=1)

    def mass(r):
        return r**2 / (1 + r) ** 2

    assert stats.kstest(r, mass).pvalue > 1e-3  # measured 0.75
    # The test can see a 3% error in the scale radius (measured p = 2e-6);
    # 5% gives p = 1e-14.
    assert stats.kstest(r * 1.05, mass).pvalue < 1e-8
    assert r.max() <= 1e4 * (1 + 1e-9)  # truncated at r_max = 1e4 a


def test_eddington_hernquist_virial(hernquist_sample):
    x, v = hernquist_sample
    phi = HERNQUIST.energy(x.T).value
    # 2K = -W with W = -GM^2/(6a): <Φ> = -1/3, <v^2> = 1/6.
    _mean_within(phi, -1 / 3)
    _mean_within(np.sum(v**2, axis=1), 1 / 6)
    assert np.all(0.5 * np.sum(v**2, axis=1) + phi < 0)


def test_eddington_tracer_as_function_or_potential():
    def density(r):
        return 1 / (r * (1 + r) ** 3)

    a = eddington_sample(HERNQUIST, density, 500, seed=3)
    b = eddington_sample(HERNQUIST, HERNQUIST, 500, seed=3)
    np.testing.assert_allclose(a.xyz.value, b.xyz.value, rtol=1e-9)
    np.testing.assert_allclose(a.v_xyz.value, b.v_xyz.value, rtol=1e-6)
    c = eddington_sample(HERNQUIST, density, 500, seed=3)
    np.testing.assert_array_equal(a.xyz.value, c.xyz.value)


def test_eddington_physical_units():
    m, a = 1e12 * u.Msun, 20 * u.kpc
    halo = gp.HernquistPotential(m=m, c=a, units=galactic)
    w = eddington_sample(halo, None, 500, seed=4)
    assert w.xyz.unit == u.kpc and w.v_xyz.unit == u.kpc / u.Myr
    # The same seed in the G = M = a = 1 sphere, rescaled.
    unit = eddington_sample(HERNQUIST, None, 500, seed=4)
    np.testing.assert_allclose(w.xyz.value, 20 * unit.xyz.value, rtol=1e-6)
    v_scale = np.sqrt(halo.G * m.value / a.value)
    np.testing.assert_allclose(w.v_xyz.value, v_scale * unit.v_xyz.value, rtol=1e-6)
    # An explicit r_range as Quantities gives the same sample.
    again = eddington_sample(
        halo, None, 500, seed=4, r_range=(2e-3 * u.kpc, 2e5 * u.kpc)
    )
    np.testing.assert_allclose(again.xyz.value, w.xyz.value, rtol=1e-9)


def test_eddington_inconsistent_pair_is_refused():
    # A cored (Plummer) tracer in a cusped (Hernquist) potential has no
    # isotropic DF: f < 0 at the most bound energies.
    with pytest.raises(ValueError, match=r"f < 0 .* no isotropic .* consistent"):
        EddingtonDF(HERNQUIST, lambda r: (1 + r**2) ** -2.5)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((PLUMMER, None, 0), {}, ValueError, "positive integer"),
        ((PLUMMER, None, 2.5), {}, ValueError, "positive integer"),
        (
            (gp.MiyamotoNagaiPotential(m=1.0, a=1.0, b=0.5, units=None), None, 10),
            {},
            ValueError,
            "not spherical",
        ),
        (
            (
                PLUMMER,
                gp.PlummerPotential(m=1.0, b=1.0, units=None, origin=[1.0, 0.0, 0.0]),
                10,
            ),
            {},
            ValueError,
            "tracer density is not spherical",
        ),
        ((gp.KeplerPotential(m=1.0, units=None), None, 10), {}, ValueError, "r_range"),
        ((PLUMMER, None, 10), {"r_range": (1.0, 0.5)}, ValueError, "r_min < r_max"),
        ((PLUMMER, lambda r: 1 - r, 10), {}, ValueError, "positive and finite"),
        ((PLUMMER, lambda r: r**-3.5, 10), {}, ValueError, "diverges"),
        ((PLUMMER, "plummer", 10), {}, TypeError, "density must be"),
        ((PlummerTruth(), None, 10), {}, TypeError, "gala potential"),
    ],
)
def test_eddington_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        eddington_sample(*args, **kwargs)
