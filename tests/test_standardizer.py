from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
import torch

from gala_deeppotential.ball_map import BallMap
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.standardizer import Standardizer, fit_rotation_curve


@pytest.fixture
def plummer():
    x, v = PlummerTruth().sample(2**15, seed=0)
    return torch.as_tensor(np.hstack([x, v]))


def test_round_trip(plummer):
    scaler = Standardizer.fit(plummer)
    torch.testing.assert_close(
        scaler.inverse(scaler.transform(plummer)), plummer, rtol=1e-12, atol=1e-12
    )


def test_asinh_tames_plummer_tails(plummer):
    # Raw positions reach r ~ 300 at 2^15 stars; scaled ones stay within a
    # few units (measured max 7.0), where linear tails beyond +-5 take over.
    s = Standardizer.fit(plummer).transform(plummer)
    assert plummer[:, :3].abs().max() > 50
    assert s.abs().max() < 9
    torch.testing.assert_close(
        s.mean(0), torch.zeros(6, dtype=s.dtype), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        s.std(0), torch.ones(6, dtype=s.dtype), atol=1e-12, rtol=0
    )


def test_jacobian_matches_autograd(plummer):
    scaler = Standardizer.fit(plummer)
    for y in plummer[:5]:
        jac = torch.autograd.functional.jacobian(scaler.transform, y)
        assert torch.count_nonzero(jac - torch.diag(torch.diag(jac))) == 0
        assert torch.linalg.slogdet(jac)[1].item() == pytest.approx(
            scaler.log_abs_det_jacobian(y).item(), abs=1e-12
        )


def test_without_asinh_the_jacobian_is_the_log_scale_sum(plummer):
    scaler = Standardizer.fit(plummer, asinh_axes=())
    expected = -torch.log(scaler.scale).sum()
    torch.testing.assert_close(
        scaler.log_abs_det_jacobian(plummer[:10]), expected.expand(10)
    )


def test_density_stays_normalised_through_the_map():
    # A standard normal in scaled units, pulled back to the caller's units,
    # still integrates to one (1-D quadrature over a wide asinh axis).
    scaler = Standardizer([0.3], [1.7], [2.0], [0.5], asinh_axes=[0])
    y = torch.linspace(-2e4, 2e4, 2_000_001, dtype=torch.float64)[:, None]
    s = scaler.transform(y)[:, 0]
    log_p = -0.5 * s**2 - 0.5 * np.log(2 * np.pi) + scaler.log_abs_det_jacobian(y)
    assert torch.trapezoid(log_p.exp(), y[:, 0]).item() == pytest.approx(1, abs=1e-6)


def test_dict_round_trip_is_exact(plummer):
    scaler = Standardizer.fit(plummer)
    again = Standardizer.from_dict(scaler.to_dict())
    assert torch.equal(again.transform(plummer), scaler.transform(plummer))


def test_bad_input_is_refused(plummer):
    data = plummer.clone()
    data[:, 4] = 3.0
    with pytest.raises(ValueError, match=r"column\(s\) \[4\] are constant"):
        Standardizer.fit(data)
    with pytest.raises(ValueError, match="scale must be positive"):
        Standardizer([0.0], [0.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="asinh_axes"):
        Standardizer([0.0], [1.0], [0.0], [1.0], asinh_axes=[1])


@pytest.fixture(scope="module")
def disc():
    from gala_deeppotential.mocks import ShuDiscDF, disc_galaxy_potential

    x, v = ShuDiscDF(disc_galaxy_potential()).sample(2**13, seed=0)
    return torch.as_tensor(np.hstack([x, v]))


def test_rotation_is_subtracted_from_a_disc_only(plummer, disc):
    # A cold disc's fitted rotation curve removes 90% of its velocity
    # variance (v0 = 0.233 kpc/Myr = 227 km/s); a sphere's removes ~1/N.
    v0, R0, removed = fit_rotation_curve(disc.numpy())
    assert 0.85 < removed < 0.95 and 0.22 < v0 < 0.245 and 0 < R0 < 5
    assert fit_rotation_curve(plummer.numpy())[2] < 1e-4
    assert Standardizer.fit(plummer).rotation_speed == 0
    spun = Standardizer.fit(disc)
    assert spun.rotation_speed == pytest.approx(v0)
    # The residual velocities, not the rotation, are what get scaled.
    assert spun.scale[3:].max() < 0.3 * disc[:, 3:].std(0).max()
    assert Standardizer.fit(disc, rotation=False).rotation_speed == 0


def test_bulk_motion_is_not_rotation(disc):
    # A cloud moving as a whole is standardized by its mean, not a rotation.
    moved = disc.clone()
    moved[:, :3] += torch.tensor([30.0, 0.0, 0.0], dtype=moved.dtype)
    moved[:, 3:] = moved[:, 3:] - disc[:, 3:] + torch.tensor([0.0, 0.2, 0.0])
    moved[:, 3:] += 0.01 * torch.randn(moved[:, 3:].shape, dtype=moved.dtype)
    assert fit_rotation_curve(moved.numpy())[2] == 0
    assert Standardizer.fit(moved).rotation_speed == 0


def _assert_exact(scaler: Standardizer, stars: torch.Tensor) -> Standardizer:
    """The map inverts, its log-Jacobian is autograd's, and it survives a dict
    round trip; returns the rebuilt one."""
    torch.testing.assert_close(
        scaler.inverse(scaler.transform(stars)), stars, rtol=1e-12, atol=1e-12
    )
    for y in stars[:3]:
        jac = torch.autograd.functional.jacobian(scaler.transform, y)
        torch.testing.assert_close(
            torch.linalg.slogdet(jac)[1],
            scaler.log_abs_det_jacobian(y[None])[0],
            rtol=1e-10,
            atol=1e-10,
        )
    again = Standardizer.from_dict(scaler.to_dict())
    assert torch.equal(again.transform(stars), scaler.transform(stars))
    return again


def test_rotation_keeps_the_map_exact(disc):
    # The shear has unit Jacobian: autograd's determinant is the per-axis one.
    _assert_exact(Standardizer.fit(disc), disc)
    with pytest.raises(ValueError, match="6-D"):
        Standardizer([0.0] * 3, [1.0] * 3, [0.0] * 3, [1.0] * 3, rotation_speed=1.0)


@pytest.fixture(scope="module")
def local_volume():
    from gala_deeppotential.mocks import ShuDiscDF, disc_galaxy_potential
    from gala_deeppotential.sky import SkyFrame

    sun = SkyFrame().offset
    disc = ShuDiscDF(disc_galaxy_potential())
    x, v = disc.sample_sphere(2**12, sun * u.kpc, 1.5 * u.kpc, seed=3)
    return torch.as_tensor(np.hstack([x, v])), BallMap(sun, 1.5)


def test_a_ball_map_takes_the_place_of_the_positions_asinh(local_volume):
    stars, ball = local_volume
    scaler = Standardizer.fit(stars, ball=ball)
    assert scaler.ball_map.to_dict() == ball.to_dict()
    assert scaler.radial_map is None
    assert scaler.asinh_axes == ()  # the velocities have none by default
    assert "ball_map" in repr(_assert_exact(scaler, stars))
    # Stars without a radial velocity keep the map.
    partial = stars.clone()
    partial[::3, 3:] = float("nan")
    assert Standardizer.fit(partial, ball=ball).ball_map.radius == 1.5


def test_a_ball_map_refuses_stars_outside_it(local_volume):
    stars, ball = local_volume
    with pytest.raises(ValueError, match="positions lie outside BallMap"):
        Standardizer.fit(stars, ball=BallMap(ball.center.tolist(), 1.0))
    params = Standardizer.fit(stars, ball=ball).to_dict()
    params["radial_map"] = {
        "center": [0.0, 0.0, 0.0],
        "node_log_radii": [0.0, 1.0],
        "node_logits": [0.0, 1.0],
    }
    with pytest.raises(ValueError, match="a radial_map or a ball_map, not both"):
        Standardizer.from_dict(params)
