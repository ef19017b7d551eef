from __future__ import annotations

import pytest
import torch

from gala_deeppotential import io
from gala_deeppotential.cbe import laplacian
from gala_deeppotential.nn import ACTIVATIONS, PotentialNet


def _net(activation="silu", radial=False):
    net = PotentialNet(
        n_hidden=32,
        n_layers=3,
        activation=activation,
        length_scale=2.0,
        phi_scale=0.7,
        radial=radial,
    ).double()
    net.phi_offset.fill_(-0.3)
    return net


@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_value_and_grad_matches_autograd(activation, radial):
    net = _net(activation, radial)
    x = torch.randn(200, 3, dtype=torch.float64).requires_grad_(True)
    phi_ref = net(x)
    (grad_ref,) = torch.autograd.grad(phi_ref.sum(), x)
    phi, grad = net.value_and_grad(x.detach())
    torch.testing.assert_close(phi, phi_ref.detach(), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_laplacian_matches_autograd_and_finite_differences(activation, radial):
    net = _net(activation, radial)
    x = torch.randn(100, 3, dtype=torch.float64)
    grad_ref, lap_ref = laplacian(net, x)
    _phi, grad, lap = net.grad_and_laplacian(x)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(lap, lap_ref, rtol=1e-12, atol=1e-14)
    h = 1e-4
    fd = sum(
        (net(x + h * e) - 2 * net(x) + net(x - h * e)) / h**2
        for e in torch.eye(3, dtype=torch.float64)
    )
    torch.testing.assert_close(lap, fd.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("radial", [False, True])
def test_hessian_symmetric_with_trace_laplacian(radial):
    net = _net(radial=radial)
    x = torch.randn(50, 3, dtype=torch.float64)
    hess = net.hessian(x)
    torch.testing.assert_close(hess, hess.transpose(1, 2), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        hess.diagonal(dim1=1, dim2=2).sum(-1), net.laplacian(x), rtol=1e-12, atol=1e-14
    )


def test_laplacian_is_differentiable_in_the_weights():
    net = _net()
    x = torch.randn(20, 3, dtype=torch.float64)
    net.laplacian(x).sum().backward()
    # Every weight shapes the Laplacian except the output bias, a pure constant.
    for name, p in net.named_parameters():
        has_grad = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert has_grad == (name != "out.bias"), name


@pytest.mark.parametrize("radial", [False, True])
def test_state_round_trip(tmp_path, radial):
    net = _net("tanh", radial)
    tensors, config = net.to_state()
    io.save(tmp_path / "net.pt", kind="potential", tensors=tensors, metadata=config)
    tensors2, meta = io.load(tmp_path / "net.pt", kind="potential")
    net2 = PotentialNet.from_state(tensors2, {k: meta[k] for k in config})
    x = torch.randn(10, 3, dtype=torch.float64)
    assert torch.equal(net(x), net2(x))
    with pytest.raises(ValueError, match="holds a 'potential' model"):
        io.load(tmp_path / "net.pt", kind="flow_ensemble")


def test_bad_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        PotentialNet(activation="relu")


def test_radial_feature_represents_a_cusp_kink():
    # Phi = -1/(1 + rho): a Hernquist-like cone at the centre, which the radial
    # feature carries exactly (one hidden unit, identity-like weights), while
    # the force stays finite and radial at small r.
    net = PotentialNet(n_hidden=1, n_layers=1, activation="tanh", radial=True)
    net = net.double()
    with torch.no_grad():
        net.hidden[0].weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 1e-3]]))
        net.hidden[0].bias.zero_()
        net.out.weight.fill_(1e3)
        net.out.bias.zero_()
    x = torch.tensor([[1e-2, 0.0, 0.0], [0.0, -1e-2, 0.0]], dtype=torch.float64)
    _, grad = net.value_and_grad(x)
    # tanh(1e-3 rho) * 1e3 = rho to 1e-7: the gradient is the unit vector.
    expected = x / torch.sqrt((x * x).sum(1, keepdim=True) + 1e-6)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-9)
    # The Laplacian of rho is 2/r away from the softening scale.
    torch.testing.assert_close(
        net.laplacian(x),
        torch.full((2,), 200.0, dtype=torch.float64),
        rtol=1e-3,
        atol=0,
    )


def test_model_files_without_the_radial_key_load_as_before():
    net = _net(radial=False)
    tensors, config = net.to_state()
    # As written before the radial feature existed.
    del config["radial"], config["radial_softening"]
    old = PotentialNet.from_state(tensors, config)
    assert old.config["radial"] is False and old.hidden[0].in_features == 3
    x = torch.randn(10, 3, dtype=torch.float64)
    assert torch.equal(net(x), old(x))


def test_pattern_speed_is_kept_in_caller_units():
    net = PotentialNet(
        n_hidden=8, n_layers=2, length_scale=2.0, phi_scale=4.0, pattern_speed=0.5
    )
    assert net.pattern_speed == pytest.approx(0.5)
    # Held in the network's units, sqrt(s_Phi) / s_x = 1 per caller unit here.
    assert float(net.omega) == pytest.approx(0.5)
    x = torch.randn(16, 3, dtype=torch.float32)
    before = net.value_and_grad(x)[1]
    net.scale_forces(1.21)
    torch.testing.assert_close(net.value_and_grad(x)[1], 1.21 * before)
    assert net.pattern_speed == pytest.approx(0.5)
    back = PotentialNet.from_state(*net.to_state())
    assert back.pattern_speed == pytest.approx(0.5)
    assert back.config["pattern_speed"] == "fixed"
    fitted = PotentialNet(n_hidden=8, n_layers=2, pattern_speed="fit")
    assert any(p is fitted.omega for p in fitted.parameters())
    assert PotentialNet.from_state(*fitted.to_state()).config["pattern_speed"] == "fit"
    assert PotentialNet(n_hidden=8, n_layers=2).pattern_speed is None
    with pytest.raises(ValueError, match="pattern_speed must be"):
        PotentialNet(pattern_speed="slow")
