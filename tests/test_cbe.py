from __future__ import annotations

import numpy as np
import pytest
import torch

from gala_deeppotential.cbe import cbe_loss, laplacian, stationarity_residual
from gala_deeppotential.mocks import PlummerTruth


@pytest.fixture(scope="module")
def phase_points():
    x, v = PlummerTruth().sample(10_000, seed=11)
    return x, v


def _plummer_phi(scale=1.0):
    return lambda x: -scale / torch.sqrt(1 + (x**2).sum(-1))


def _terms(x, v, grad_phi, gx, gv):
    return np.abs(np.sum(v * gx, 1)) + np.abs(np.sum(grad_phi * gv, 1))


@pytest.mark.parametrize("form", ["log_f", "f"])
def test_true_potential_is_stationary(phase_points, form):
    x, v = phase_points
    truth = PlummerTruth()
    gx, gv = truth.grad_log_f(x, v)
    if form == "f":
        f = np.exp(truth.log_f(x, v))[:, None]
        gx, gv = f * gx, f * gv
    grad_phi = truth.grad_phi(x)
    res = stationarity_residual(*map(torch.from_numpy, (v, grad_phi, gx, gv)))
    assert res.dtype == torch.float64
    rel = np.abs(res.numpy()) / _terms(x, v, grad_phi, gx, gv)
    assert rel.max() < 1e-6


def test_wrong_mass_is_not_stationary(phase_points):
    x, v = phase_points
    truth = PlummerTruth()
    gx, gv = truth.grad_log_f(x, v)
    grad_phi = 1.2 * truth.grad_phi(x)
    res = stationarity_residual(*map(torch.from_numpy, (v, grad_phi, gx, gv)))
    rel = np.abs(res.numpy()) / _terms(x, v, grad_phi, gx, gv)
    # The residual is exactly 0.2 * grad_phi . grad_v ln f, a ~10% effect.
    assert np.median(rel) > 0.05
    expected = 0.2 / 1.2 * np.sum(grad_phi * gv, 1)
    np.testing.assert_allclose(res.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_laplacian_of_plummer_is_four_pi_rho(phase_points):
    x, _ = phase_points
    truth = PlummerTruth()
    grad, lap = laplacian(_plummer_phi(), torch.from_numpy(x[:2000]))
    np.testing.assert_allclose(grad.detach().numpy(), truth.grad_phi(x[:2000]))
    np.testing.assert_allclose(
        lap.detach().numpy(), 4 * np.pi * truth.density(x[:2000]), rtol=1e-10
    )


def test_laplacian_keeps_graph_for_training():
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.3, 0.2, -0.1]], dtype=torch.float64)
    _, lap = laplacian(lambda y: scale * -1 / torch.sqrt(1 + (y**2).sum(-1)), x)
    lap.sum().backward()
    # d(lap)/d(scale) is the Laplacian of the unit potential: 4 pi rho(x).
    expected = 4 * np.pi * PlummerTruth().density(x.numpy())[0]
    assert scale.grad.item() == pytest.approx(expected, rel=1e-12)


def test_loss_values():
    res = torch.tensor([0.0, 1.0, -2.0, 0.5])
    lap = torch.tensor([1.0, -1.0, 0.0, -3.0])
    expected = np.mean(np.arcsinh([0.0, 1.0, 2.0, 0.5])) + 2.0 * np.mean(
        np.arcsinh([0.0, 1.0, 0.0, 3.0])
    )
    assert cbe_loss(res, lap).item() == pytest.approx(expected, rel=1e-6)
    # lambda = 0 drops the density penalty; positive Laplacians never count.
    assert cbe_loss(res, lap, negative_density_weight=0.0).item() == pytest.approx(
        np.mean(np.arcsinh([0.0, 1.0, 2.0, 0.5])), rel=1e-6
    )
    assert cbe_loss(torch.zeros(3), torch.tensor([0.1, 5.0, 2.0])).item() == 0.0


def _triaxial_jacobi(omega: float, n: int = 2000, seed: int = 0):
    """Points, ∇Φ and the gradients of ln f for f = exp(-E_J) in a rotating
    triaxial harmonic potential, Φ = (x² + 2y² + 3z²)/2 at this instant."""
    rng = np.random.default_rng(seed)
    x, v = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    grad_phi = x * np.array([1.0, 2.0, 3.0])
    # E_J = v²/2 + Φ(x) - Ω (x v_y - y v_x).
    grad_x = -(grad_phi - omega * np.stack([v[:, 1], -v[:, 0], 0 * v[:, 0]], 1))
    grad_v = -(v - omega * np.stack([-x[:, 1], x[:, 0], 0 * x[:, 0]], 1))
    return x, v, grad_phi, grad_x, grad_v


def test_pattern_speed_term_makes_a_rotating_bar_stationary():
    omega = 0.7
    x, v, grad_phi, grad_x, grad_v = map(torch.from_numpy, _triaxial_jacobi(omega))
    scale = (v * grad_x).sum(-1).abs() + (grad_phi * grad_v).sum(-1).abs()
    rotating = stationarity_residual(
        v, grad_phi, grad_x, grad_v, x=x, pattern_speed=omega
    )
    assert float((rotating.abs() / scale).max()) < 1e-12
    # Without the term the aspherical DF turns; the residual is linear in
    # the speed, zero at the true one.
    inertial = stationarity_residual(v, grad_phi, grad_x, grad_v)
    assert float((inertial.abs() / scale).median()) > 0.05
    other = stationarity_residual(v, grad_phi, grad_x, grad_v, x=x, pattern_speed=0.5)
    np.testing.assert_allclose(other, inertial * (0.5 - omega) / -omega, rtol=1e-9)
    # The term is linear in the speed, so a tensor speed gets its gradient.
    speed = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    loss = (
        stationarity_residual(v, grad_phi, grad_x, grad_v, x=x, pattern_speed=speed)
        .square()
        .sum()
    )
    loss.backward()
    assert float(speed.grad) < 0  # the loss falls towards 0.7
    with pytest.raises(ValueError, match="needs the positions"):
        stationarity_residual(v, grad_phi, grad_x, grad_v, pattern_speed=omega)
