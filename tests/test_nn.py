from __future__ import annotations

import pytest
import torch

from gala_deeppotential import io
from gala_deeppotential.cbe import laplacian
from gala_deeppotential.nn import ACTIVATIONS, PotentialNet


def _net(activation="silu"):
    net = PotentialNet(
        n_hidden=32, n_layers=3, activation=activation, length_scale=2.0, phi_scale=0.7
    ).double()
    net.phi_offset.fill_(-0.3)
    return net


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_value_and_grad_matches_autograd(activation):
    net = _net(activation)
    x = torch.randn(200, 3, dtype=torch.float64).requires_grad_(True)
    phi_ref = net(x)
    (grad_ref,) = torch.autograd.grad(phi_ref.sum(), x)
    phi, grad = net.value_and_grad(x.detach())
    torch.testing.assert_close(phi, phi_ref.detach(), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_laplacian_matches_autograd_and_finite_differences(activation):
    net = _net(activation)
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


def test_hessian_symmetric_with_trace_laplacian():
    net = _net()
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


def test_state_round_trip(tmp_path):
    net = _net("tanh")
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
