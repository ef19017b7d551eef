"""Stars without a radial velocity: the line of sight, the proposal, and the
Monte Carlo integral over the missing radial velocity."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord
from gala.units import galactic

from gala_deeppotential.deconvolution import NoisyAstrometry
from gala_deeppotential.df import FlowEnsemble
from gala_deeppotential.likelihood import (
    StarLikelihood,
    _factorized_log_prob,
    jackknife_log_mean_exp,
)
from gala_deeppotential.mocks import plummer_sample
from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME, to_phase_space
from gala_deeppotential.sightlines import (
    WIDEN,
    MissingRadialVelocities,
    missing_rv_draws,
    radial_velocity_proposal,
    sun_to_star,
)
from gala_deeppotential.sky import SkyFrame
from gala_deeppotential.training import TrainingOptions

KMS = (1 * u.km / u.s).to_value(u.kpc / u.Myr)


def _icrs_with_missing_rv(n: int, every: int, seed: int):
    """An ICRS catalogue of a Plummer sphere whose every ``every``-th star has
    no radial velocity, and its true Galactocentric velocities [kpc/Myr]."""
    w = plummer_sample(n, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=seed)
    icrs = SkyCoord(w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME).icrs
    rv = icrs.radial_velocity.copy()
    rv[::every] = np.nan
    catalogue = SkyCoord(
        ra=icrs.ra,
        dec=icrs.dec,
        distance=icrs.distance,
        pm_ra_cosdec=icrs.pm_ra_cosdec,
        pm_dec=icrs.pm_dec,
        radial_velocity=rv,
    )
    return catalogue, w.v_xyz.to_value(u.kpc / u.Myr).T


def test_zero_rv_velocity_and_line_of_sight_rebuild_the_velocity():
    catalogue, v_true = _icrs_with_missing_rv(600, 3, seed=1)
    data = to_phase_space(catalogue)
    missing = ~data.has_rv
    assert missing.sum() == 200
    assert np.isnan(data.v_zero_rv[~missing]).all()
    n_hat = sun_to_star(data.x, data.frame)
    assert np.allclose(np.linalg.norm(n_hat, axis=1), 1)
    # v = v_0 + v_r n: the remainder lies along the line of sight, and its
    # length is the heliocentric radial velocity that was dropped.
    rest = v_true[missing] - data.v_zero_rv[missing]
    v_r = np.sum(rest * n_hat[missing], axis=1)
    assert np.abs(rest - v_r[:, None] * n_hat[missing]).max() < 1e-12
    frame = SkyFrame(data.frame)
    observed = frame.observe(data.x[missing], v_true[missing] / KMS)
    assert np.allclose(v_r / KMS, observed["radial_velocity"], atol=1e-8)


def test_complete_catalogues_have_no_zero_rv_velocities():
    catalogue, _ = _icrs_with_missing_rv(300, 10**6, seed=2)
    catalogue = catalogue[1:]  # every radial velocity given
    data = to_phase_space(catalogue)
    assert data.has_rv is None and data.v_zero_rv is None
    assert missing_rv_draws(data, 2) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposal_is_the_conditional_gaussian_along_the_line(seed):
    # Velocities N(mu, Sigma) everywhere: the neighbours' Gaussian along a
    # star's line has mean n.Sigma^-1 (mu - v0) / P and width 1/sqrt(P).
    rng = np.random.default_rng(seed)
    n = 8000
    mu = np.array([0.1, -0.2, 0.05])
    a = rng.normal(size=(3, 3))
    sigma = a @ a.T + 0.2 * np.eye(3)
    x = rng.uniform(-1, 1, size=(n, 3))
    v = rng.multivariate_normal(mu, sigma, size=n)
    n_hat = rng.normal(size=(n, 3))
    n_hat /= np.linalg.norm(n_hat, axis=1, keepdims=True)
    has_rv = rng.random(n) < 0.5
    v_r = np.sum(v * n_hat, axis=1)
    base = np.where(has_rv[:, None], v, v - v_r[:, None] * n_hat)
    mean, width = radial_velocity_proposal(
        x, base, has_rv, n_hat, neighbours=2000, widen=1.0
    )
    assert np.all(mean[has_rv] == 0) and np.all(width[has_rv] == 0)
    inverse = np.linalg.inv(sigma)
    m = ~has_rv
    solved = n_hat[m] @ inverse
    precision = np.sum(solved * n_hat[m], axis=1)
    exact_mean = np.sum(solved * (mu - base[m]), axis=1) / precision
    exact_width = 1 / np.sqrt(precision)
    # 2000 neighbours: the mean and covariance to a few per cent (seeds 0-5:
    # median errors of at most 0.025 widths and 1.8% of the width).
    assert np.median(np.abs(mean[m] - exact_mean) / exact_width) < 0.05
    assert np.median(np.abs(width[m] / exact_width - 1)) < 0.04
    # Given the tangential velocity, the dropped v_r follows the proposal
    # (about 4000 stars: the mean of z to 0.016, its spread to 0.011).
    z = (v_r[m] - mean[m]) / width[m]
    assert abs(z.mean()) < 0.06 and abs(z.std() - 1) < 0.05


def test_widen_scales_the_width():
    rng = np.random.default_rng(3)
    x, v = rng.normal(size=(3000, 3)), rng.normal(size=(3000, 3))
    has_rv = np.arange(3000) % 4 > 0
    n_hat = np.tile([0.0, 0.0, 1.0], (3000, 1))
    _, one = radial_velocity_proposal(x, v, has_rv, n_hat, widen=1.0)
    _, default = radial_velocity_proposal(x, v, has_rv, n_hat)
    _, wider = radial_velocity_proposal(x, v, has_rv, n_hat, widen=1.7)
    assert np.allclose(default[~has_rv], WIDEN * one[~has_rv])
    assert np.allclose(wider[~has_rv], 1.7 * one[~has_rv])
    with pytest.raises(ValueError, match="at least 2 stars with a radial"):
        radial_velocity_proposal(x, v, np.arange(3000) == 0, n_hat)


def _gaussian_line_integral(v0, n_hat, mu, sigma):
    """ln of the integral over t of N(v0 + t n; mu, sigma), exactly."""
    inverse = np.linalg.inv(sigma)
    d = v0 - mu
    p = n_hat @ inverse @ n_hat
    b = n_hat @ inverse @ d
    quad = d @ inverse @ d - b**2 / p
    return (
        -math.log(2 * math.pi)
        - 0.5 * math.log(np.linalg.det(sigma))
        - 0.5 * math.log(p)
        - 0.5 * quad
    )


def test_weighted_draws_integrate_out_the_radial_velocity():
    catalogue, _ = _icrs_with_missing_rv(400, 2, seed=4)
    data = to_phase_space(catalogue)
    draws = MissingRadialVelocities(
        data.x, data.v, data.v_zero_rv, data.frame, data.units
    )
    star = int(np.flatnonzero(~data.has_rv)[0])
    mu = np.nanmean(data.v, axis=0)
    sigma = np.cov(data.v[data.has_rv].T)
    exact = _gaussian_line_integral(
        data.v_zero_rv[star], sun_to_star(data.x, data.frame)[star], mu, sigma
    )
    noise = torch.randn(1, 20000, 4, generator=torch.Generator().manual_seed(0))
    y, log_w = draws.draw(torch.tensor([star]), noise)
    assert torch.equal(y[0, :, :3], torch.as_tensor(data.x[star]).expand(20000, 3))
    dist = torch.distributions.MultivariateNormal(
        torch.as_tensor(mu), torch.as_tensor(sigma)
    )
    estimate = float(jackknife_log_mean_exp(dist.log_prob(y[..., 3:]) + log_w)[0])
    assert estimate == pytest.approx(exact, abs=0.01)
    # A star with a radial velocity is drawn as it is, with weight 1.
    full = int(np.flatnonzero(data.has_rv)[0])
    y, log_w = draws.draw(torch.tensor([full]), noise[:, :5])
    assert torch.equal(log_w, torch.zeros(1, 5, dtype=torch.float64))
    assert torch.allclose(y[0, :, 3:], torch.as_tensor(data.v[full]).expand(5, 3))


def test_star_likelihood_marginalizes_the_flows_over_the_line():
    # Through the flows and the standardizer: the Monte Carlo likelihood of a
    # star without a radial velocity equals ln p(x) + ln of the integral of
    # p(v | x) along its line, computed by quadrature from the joint density.
    catalogue, _ = _icrs_with_missing_rv(2000, 2, seed=5)
    data = to_phase_space(catalogue)
    draws = missing_rv_draws(data, 2)
    ensemble = FlowEnsemble(n_flows=2, factorization="conditional")
    y = torch.as_tensor(data.w)
    ensemble.standardizer = ensemble.fit_standardizer(y)
    ensemble.flow = ensemble.build_flow(seed=0)
    settings = {
        **vars(TrainingOptions(rv_samples=4096)),
        "seed": 0,
    }
    order = torch.arange(len(y))
    stars = StarLikelihood(
        ensemble.flow, ensemble.standardizer, y, order, 1, draws, settings, "cpu"
    )
    assert stars.samples == 4096
    chosen = np.flatnonzero(~data.has_rv)[:3]
    noise = torch.randn(2, 3, 4096, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        estimate = stars._log_likelihood(torch.as_tensor(chosen).expand(2, 3), noise)
    n_hat = sun_to_star(data.x, data.frame)
    mean, width = draws.proposal[chosen].numpy().T
    for j, star in enumerate(chosen):
        t = mean[j] + width[j] * np.linspace(-12, 12, 4001)
        v = data.v_zero_rv[star] + t[:, None] * n_hat[star]
        x = np.repeat(data.x[star][None], len(v), axis=0)
        for k in range(2):
            log_f = ensemble.member(k).log_prob(x, v).double()
            quadrature = torch.logsumexp(log_f, dim=0) + math.log(t[1] - t[0])
            assert float(estimate[k, j]) == pytest.approx(float(quadrature), abs=0.02)


def _one_member_likelihood(y: torch.Tensor, draws, factorization: str):
    """StarLikelihood of one untrained flow member standardized on ``y``,
    every star a training one, and the ensemble."""
    ensemble = FlowEnsemble(n_flows=1, factorization=factorization)
    ensemble.standardizer = ensemble.fit_standardizer(y)
    ensemble.flow = ensemble.build_flow(seed=0)
    settings = {**vars(TrainingOptions()), "seed": 0}
    stars = StarLikelihood(
        ensemble.flow,
        ensemble.standardizer,
        y,
        torch.arange(len(y)),
        1,
        draws,
        settings,
        "cpu",
    )
    return stars, ensemble


def _pair_and_single_draws(draws_for, seed: int):
    """StarLikelihood's 2-draw values of 5 stars without and 5 with a radial
    velocity, and the values of each draw alone."""
    catalogue, _ = _icrs_with_missing_rv(1000, 2, seed=seed)
    data = to_phase_space(catalogue)
    stars, _ = _one_member_likelihood(
        torch.as_tensor(data.w), draws_for(data), "conditional"
    )
    chosen = np.concatenate(
        [np.flatnonzero(~data.has_rv)[:5], np.flatnonzero(data.has_rv)[:5]]
    )
    rows = torch.as_tensor(chosen)[None]
    noise = 3 * torch.randn(1, 10, 2, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pair = stars._log_likelihood(rows, noise)
        a = stars._log_likelihood(rows, noise[:, :, :1])
        b = stars._log_likelihood(rows, noise[:, :, 1:])
    return pair[0], a[0], b[0]


def _noisy_with_tiny_errors(data):
    """The catalogue's astrometry with errors of 0.1% as NoisyAstrometry that
    draws the missing radial velocities."""
    base = np.where(data.has_rv[:, None], data.v, data.v_zero_rv) / KMS
    astrometry = SkyFrame().observe(data.x, base)
    astrometry["radial_velocity"] = np.where(
        data.has_rv, astrometry["radial_velocity"], np.nan
    )
    for key in ("parallax", "pmra", "pmdec", "radial_velocity"):
        astrometry[f"{key}_error"] = 1e-3 * np.abs(astrometry[key]) + 1e-6
    return NoisyAstrometry(astrometry, None, galactic, marginalize_rv=True)


def test_drawn_radial_velocities_are_averaged_without_the_jackknife():
    # The jackknife's correction grows without bound as two draws' values
    # part, which training exploits; a drawn radial velocity takes the plain
    # log-mean, so M = 2 gives ln((e^a + e^b) / 2) of the one-draw values.
    plain = lambda a, b: torch.logaddexp(a, b) - math.log(2)  # noqa: E731
    pair, a, b = _pair_and_single_draws(lambda d: missing_rv_draws(d, 2), seed=7)
    assert torch.allclose(pair, plain(a, b), atol=1e-5)
    jackknife = jackknife_log_mean_exp(torch.stack([a, b], dim=-1))
    assert not torch.allclose(pair[:5], jackknife[:5], atol=1e-3)
    # With measurement errors: the jackknife for the stars with a radial
    # velocity, the plain mean for those whose radial velocity is drawn.
    pair, a, b = _pair_and_single_draws(_noisy_with_tiny_errors, seed=8)
    jackknife = jackknife_log_mean_exp(torch.stack([a, b], dim=-1))
    assert torch.allclose(pair[:5], plain(a, b)[:5], atol=1e-5)
    assert torch.allclose(pair[5:], jackknife[5:], atol=1e-5)
    assert not torch.allclose(pair[:5], jackknife[:5], atol=1e-3)


def test_noisy_astrometry_draws_missing_radial_velocities_from_the_proposal():
    catalogue, _ = _icrs_with_missing_rv(1000, 2, seed=6)
    frame = SkyFrame()
    data = to_phase_space(catalogue)
    base = np.where(data.has_rv[:, None], data.v, data.v_zero_rv) / KMS
    astrometry = frame.observe(data.x, base)
    astrometry["radial_velocity"] = np.where(
        data.has_rv, astrometry["radial_velocity"], np.nan
    )
    for key in ("parallax", "pmra", "pmdec", "radial_velocity"):
        astrometry[f"{key}_error"] = np.full(len(data), 1e-9)
    plain = NoisyAstrometry(astrometry, None, galactic)
    drawn = NoisyAstrometry(astrometry, None, galactic, marginalize_rv=True)
    exact = MissingRadialVelocities(
        data.x, data.v, data.v_zero_rv, data.frame, data.units
    )
    assert not plain.marginalizes_rv and drawn.marginalizes_rv
    rows = torch.as_tensor(np.flatnonzero(~data.has_rv)[:4])
    noise = torch.randn(4, 8, 4, generator=torch.Generator().manual_seed(2))
    y_plain, w_plain = plain.draw(rows, noise)
    y_drawn, w_drawn = drawn.draw(rows, noise)
    y_exact, w_exact = exact.draw(rows, noise)
    # With vanishing errors the noisy draws are the exact ones; the weight
    # adds 2 ln d for the velocities and -ln q of the drawn v_r (in km/s, so
    # 3 ln(km/s per kpc/Myr) apart from the exact draws' -ln q in kpc/Myr).
    assert torch.allclose(y_drawn, y_exact, atol=1e-9)
    assert torch.allclose(y_plain[..., :3], y_exact[..., :3], atol=1e-9)
    parallax = torch.as_tensor(astrometry["parallax"])[rows][:, None]
    assert torch.allclose(w_plain, -4 * torch.log(parallax).expand(4, 8))
    expected = w_exact - 6 * torch.log(parallax) - math.log(KMS)
    assert torch.allclose(w_drawn, expected, atol=1e-6)


def test_rv_samples_are_zero_or_at_least_two():
    for bad in (1, -2, 2.5):
        with pytest.raises(ValueError, match="rv_samples must be 0"):
            TrainingOptions(rv_samples=bad)
    assert TrainingOptions(rv_samples=0).rv_samples == 0


def test_draws_behind_the_observer_neither_poison_nor_inflate_the_likelihood():
    # A draw of the true parallax <= 0 has weight 0: a star with one such
    # draw of two takes the plain mean (ln(e^a / 2)), not the jackknife,
    # whose leave-one-out log is -inf; a star with both behind counts as 0
    # with no gradient, and the loss and every gradient stay finite.
    w = plummer_sample(1000, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=9)
    x, v = w.xyz.to_value(u.kpc).T, w.v_xyz.to_value(u.kpc / u.Myr).T
    astrometry = SkyFrame().observe(x, v / KMS)
    for key in ("parallax", "pmra", "pmdec", "radial_velocity"):
        astrometry[f"{key}_error"] = 1e-3 * np.abs(astrometry[key]) + 1e-6
    noisy = NoisyAstrometry(astrometry, None, galactic)
    y = torch.as_tensor(np.concatenate([x, v], axis=1))
    stars, ensemble = _one_member_likelihood(y, noisy, "joint")
    rows = torch.arange(3)[None]
    noise = torch.randn(1, 3, 2, 4, generator=torch.Generator().manual_seed(0))
    behind = -2e3  # parallax errors are 0.1%: this puts a draw behind the Sun
    noise[0, 1, 0, 0] = behind
    noise[0, 2, :, 0] = behind
    ell = stars._log_likelihood(rows, noise)[0]
    with torch.no_grad():
        second = stars._log_likelihood(rows, noise[:, :, 1:])[0]
    value = ell.detach()
    assert torch.isfinite(value).all()
    assert float(value[1]) == pytest.approx(float(second[1]) - math.log(2), abs=1e-5)
    assert float(value[2]) == 0.0
    ell.sum().backward()
    grads = [p.grad for p in ensemble.flow.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_repeated_draws_evaluate_the_velocity_flow_once():
    # Stars whose draws are all the same (a radial velocity and no errors)
    # get the value and gradient of evaluating every draw, from one.
    ensemble = FlowEnsemble(n_flows=2, factorization="conditional")
    y = torch.randn(500, 6, generator=torch.Generator().manual_seed(4))
    ensemble.standardizer = ensemble.fit_standardizer(y)
    ensemble.flow = ensemble.build_flow(seed=0)
    generator = torch.Generator().manual_seed(2)
    s = torch.randn(2, 40, 3, 6, generator=generator)
    s[..., :3] = s[:, :, :1, :3]
    single = torch.rand(2, 40, generator=generator) < 0.4
    single[1, :30] = True  # the members need different numbers of rows
    s = torch.where(single[..., None, None], s[:, :, :1], s)
    values = []
    for mask in (None, single):
        ensemble.flow.zero_grad()
        lp_x, lp_v = _factorized_log_prob(ensemble.flow, s, True, mask)
        (lp_x.sum() + (lp_v * torch.linspace(1, 2, 3)).sum()).backward()
        params = ensemble.flow.parameters()
        grads = [p.grad.clone() for p in params if p.grad is not None]
        values.append((lp_v.detach(), grads))
    (full, full_grads), (once, once_grads) = values
    torch.testing.assert_close(once, full, rtol=0, atol=1e-5)
    assert len(once_grads) == len(full_grads) > 0
    for a, b in zip(once_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
