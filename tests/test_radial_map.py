from __future__ import annotations

import gala.potential as gp
import numpy as np
import pytest
import torch
from scipy import stats

from gala_deeppotential.mocks import EddingtonDF, PlummerTruth
from gala_deeppotential.radial_map import RadialProfileMap
from gala_deeppotential.standardizer import Standardizer


@pytest.fixture(scope="module")
def plummer():
    x, v = PlummerTruth().sample(2**16, seed=1)
    return x, v, RadialProfileMap.fit(x)


def _mapped_radius(profile, r):
    x = torch.as_tensor(np.stack([r, 0 * r, 0 * r], axis=1))
    return (profile.forward(x + profile.center)[0] - profile.center)[:, 0].numpy()


def test_plummer_profile_is_recovered(plummer):
    # psi(r) = G^-1(M(r)) with the exact M = r^3 / (1 + r^2)^1.5: within 1%
    # from 0.25 to 20 b at 2^16 stars (0.3% measured), and within 5% at 0.1 b.
    _, _, profile = plummer
    r = np.array([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 20.0])
    exact = stats.chi.ppf(r**3 / (1 + r**2) ** 1.5, 3)
    error = _mapped_radius(profile, r) / exact - 1
    assert np.all(np.abs(error[1:]) < 0.01), error
    assert abs(error[0]) < 0.05, error


def test_stars_land_on_a_unit_gaussian():
    # Fresh stars of the profile the map was fitted to.
    x, _ = PlummerTruth().sample(2**15, seed=2)
    profile = RadialProfileMap.fit(PlummerTruth().sample(2**15, seed=3)[0])
    r = np.linalg.norm(profile.forward(torch.as_tensor(x))[0].numpy(), axis=1)
    assert stats.kstest(r, stats.chi(3).cdf).pvalue > 1e-3
    # and a wrong profile does not: the same map on a sphere twice as big.
    r_big = np.linalg.norm(profile.forward(torch.as_tensor(2 * x))[0].numpy(), axis=1)
    assert stats.kstest(r_big, stats.chi(3).cdf).pvalue < 1e-6


def test_a_cusp_lands_on_a_unit_gaussian():
    hernquist = gp.HernquistPotential(m=1.0, c=1.0, units=None)
    x, _ = EddingtonDF(hernquist).sample(2**15, seed=4)
    profile = RadialProfileMap.fit(x)
    r = np.linalg.norm(profile.forward(torch.as_tensor(x))[0].numpy(), axis=1)
    assert np.mean(r**2) == pytest.approx(3, abs=0.05)


def test_inverse_and_log_jacobian(plummer):
    x, _, profile = plummer
    q = torch.as_tensor(x[:200])
    mapped, log_det = profile.forward(q)
    assert torch.allclose(profile.inverse(mapped), q, rtol=0, atol=1e-9)
    jacobians = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda z: profile.forward(z)[0], point)
            for point in q[:40]
        ]
    )
    exact = torch.log(torch.det(jacobians).abs())
    assert torch.allclose(log_det[:40], exact, atol=1e-6)


def test_smooth_at_the_centre(plummer):
    _, _, profile = plummer
    centre = profile.center.clone().requires_grad_(True)
    mapped, log_det = profile.forward(centre[None])
    assert torch.allclose(mapped[0], profile.center)
    (grad,) = torch.autograd.grad(log_det.sum(), centre)
    assert bool(torch.isfinite(grad).all())


def test_round_trip_through_dict(plummer):
    x, _, profile = plummer
    again = RadialProfileMap.from_dict(profile.to_dict())
    q = torch.as_tensor(x[:100])
    assert torch.equal(again.forward(q)[0], profile.forward(q)[0])


def test_standardizer_with_a_radial_profile(plummer):
    x, v, _ = plummer
    data = np.hstack([x, v])
    scaler = Standardizer.fit(data, radial_profile=True)
    assert scaler.radial_map is not None and scaler.asinh_axes == ()
    assert "radial_map" in repr(scaler)
    y = torch.as_tensor(data[:50])
    s = scaler.transform(y)
    assert torch.allclose(scaler.inverse(s), y, atol=1e-9)
    jac = torch.stack(
        [torch.autograd.functional.jacobian(scaler.transform, point) for point in y]
    )
    exact = torch.log(torch.det(jac).abs())
    assert torch.allclose(scaler.log_abs_det_jacobian(y), exact, atol=1e-6)
    positions, velocities = scaler.log_abs_det_jacobian_split(y)
    assert torch.allclose(positions + velocities, exact, atol=1e-6)
    rebuilt = Standardizer.from_dict(scaler.to_dict())
    assert torch.equal(rebuilt.transform(y), s)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 0, 0], [0.0, 1.0], [1.0]), "two 1-D arrays"),
        (([0, 0, 0], [1.0, 0.0], [0.0, 1.0]), "must increase"),
        (([0, 0], [0.0, 1.0], [0.0, 1.0]), "3 entries"),
        (([0, 0, 0], [0.0, 1.0], [1.0, 0.0]), "must increase with radius"),
    ],
)
def test_bad_parameters_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        RadialProfileMap(*args)


def test_too_few_stars_are_refused():
    with pytest.raises(ValueError, match="at least 16 stars"):
        RadialProfileMap.fit(np.ones((10, 3)))


def test_flows_with_a_radial_profile(tmp_path):
    from gala_deeppotential.df import FlowEnsemble
    from gala_deeppotential.training import fit_distribution_function

    x, v = PlummerTruth().sample(2**12, seed=5)
    df = fit_distribution_function(
        np.hstack([x, v]), n_flows=2, epochs=1, radial_profile=True, seed=1
    )
    assert df.standardizer.radial_map is not None
    grad_x, grad_v = df.grad_log_prob(x[:50], v[:50])
    assert bool(torch.isfinite(grad_x).all() & torch.isfinite(grad_v).all())
    again = FlowEnsemble.load(df.save(tmp_path / "df.pt"))
    assert torch.equal(again.log_prob(x[:50], v[:50]), df.log_prob(x[:50], v[:50]))
    xs, _ = again.sample(500, seed=2)
    assert np.all(np.isfinite(np.asarray(xs)))
