from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi

from gala_deeppotential.ball_map import BallMap, _Chi3Quantile

CENTER = [-8.1, 0.0, 0.02]
RADIUS = 1.5


@pytest.fixture
def ball():
    return BallMap(CENTER, RADIUS)


def _points(radii: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Positions at ``radii`` from the centre in random directions (float64)."""
    direction = np.random.default_rng(seed).normal(size=(len(radii), 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    return torch.as_tensor(np.asarray(CENTER) + direction * radii[:, None])


# Fractions of R from the centre out to 1e-11 below the surface.
EDGES = 1 - np.geomspace(1e-11, 0.5, 40)
FRACTIONS = np.concatenate([np.geomspace(1e-14, 0.5, 40), EDGES])


def test_radius_is_the_chi3_quantile_of_the_enclosed_fraction():
    m = FRACTIONS**3
    psi = _Chi3Quantile.apply(torch.as_tensor(np.log(FRACTIONS))).numpy()
    expected = np.where(
        m < 0.5, chi.ppf(m, 3), chi.isf(-np.expm1(3 * np.log(FRACTIONS)), 3)
    )
    np.testing.assert_allclose(psi, expected, rtol=1e-13)


def test_round_trip_reaches_the_centre_and_the_surface(ball):
    x = _points(RADIUS * FRACTIONS)
    mapped, _ = ball.forward(x)
    torch.testing.assert_close(ball.inverse(mapped), x, rtol=0, atol=1e-13)
    # The surface goes to infinity: 1e-11 R below it is ~7 units out.
    assert 6.5 < mapped.norm(dim=1).max().item() < 7.5


def test_log_det_is_the_jacobian(ball):
    x = _points(RADIUS * np.array([1e-9, 0.01, 0.3, 0.7, 0.95, 1 - 1e-6]))
    _, log_det = ball.forward(x)
    for point, expected in zip(x, log_det, strict=True):
        jacobian = torch.autograd.functional.jacobian(
            lambda y: ball.forward(y)[0], point
        )
        assert torch.linalg.slogdet(jacobian)[1].item() == pytest.approx(
            expected.item(), abs=1e-9
        )


def test_a_uniform_ball_becomes_a_unit_gaussian(ball):
    # Exactly: the unit Gaussian at x' times |dx'/dx| is the uniform density.
    x = _points(RADIUS * FRACTIONS)
    mapped, log_det = ball.forward(x)
    log_gauss = -0.5 * (mapped**2).sum(dim=1) - 1.5 * math.log(2 * math.pi)
    uniform = -math.log(4 / 3 * math.pi * RADIUS**3)
    torch.testing.assert_close(
        log_gauss + log_det, torch.full_like(log_det, uniform), rtol=0, atol=1e-9
    )
    # And so uniform draws have the unit Gaussian's moments.
    rng = np.random.default_rng(1)
    draws = _points(RADIUS * rng.random(2**16) ** (1 / 3), seed=2)
    mapped = ball.forward(draws)[0]
    torch.testing.assert_close(
        mapped.mean(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=0.02
    )
    torch.testing.assert_close(
        mapped.std(0), torch.ones(3, dtype=torch.float64), rtol=0, atol=0.02
    )


def test_quantile_has_exact_first_and_second_derivatives():
    log_u = torch.tensor([-30.0, -3.0, -0.5, -0.01, -1e-4], dtype=torch.float64)
    log_u.requires_grad_(True)
    assert torch.autograd.gradcheck(_Chi3Quantile.apply, (log_u,))
    assert torch.autograd.gradgradcheck(_Chi3Quantile.apply, (log_u,))


def test_float32_positions_on_the_surface_stay_finite(ball):
    # A star just inside R can round to just outside it in float32.
    x = _points(RADIUS * np.array([0.5, 1 - 1e-9, 1 + 1e-8])).float()
    mapped, log_det = ball.forward(x)
    assert mapped.dtype == log_det.dtype == torch.float32
    assert bool(torch.isfinite(mapped).all() & torch.isfinite(log_det).all())
    assert torch.equal(
        torch.as_tensor(ball.contains(x.double().numpy())),
        torch.tensor([True, True, False]),
    )


def test_points_outside_have_zero_density(ball):
    x = _points(RADIUS * np.array([0.5, 1 + 1e-4, 2.0, 1e3]))
    mapped, log_det = ball.forward(x)
    assert bool(torch.isfinite(mapped).all())
    assert bool(torch.isfinite(log_det[0]))
    assert bool((log_det[1:] == -math.inf).all())


def test_dict_round_trip_and_bad_parameters(ball):
    again = BallMap.from_dict(ball.to_dict())
    x = _points(RADIUS * FRACTIONS)
    assert torch.equal(again.forward(x)[0], ball.forward(x)[0])
    assert "radius=1.5" in repr(ball)
    with pytest.raises(ValueError, match="radius must be positive"):
        BallMap(CENTER, 0.0)
    with pytest.raises(ValueError, match="center must be 3 finite numbers"):
        BallMap([0.0, 1.0], 1.0)
