"""Physics of stationarity: the collisionless Boltzmann residual and its loss."""

from __future__ import annotations

__all__ = ["cbe_loss", "laplacian", "stationarity_residual"]

from collections.abc import Callable

import torch


def stationarity_residual(
    v: torch.Tensor,
    grad_phi: torch.Tensor,
    grad_x: torch.Tensor,
    grad_v: torch.Tensor,
) -> torch.Tensor:
    r"""The time derivative of the DF implied by the collisionless Boltzmann equation.

    .. math::

        \frac{\partial f}{\partial t} =
            -\sum_i \left( v_i \frac{\partial f}{\partial x_i}
            - \frac{\partial \Phi}{\partial x_i} \frac{\partial f}{\partial v_i}
            \right)

    The expression is linear in the DF gradients, so it serves both forms of
    the method: pass :math:`\nabla f` for the paper's :math:`\partial f/\partial t`,
    or :math:`\nabla \ln f` for :math:`\partial \ln f / \partial t =
    (\partial f/\partial t)/f`, which weights all of phase space equally.

    Parameters
    ----------
    v : :class:`torch.Tensor`, shape ``(N, 3)``
        Velocities.
    grad_phi : :class:`torch.Tensor`, shape ``(N, 3)``
        :math:`\nabla\Phi` at the positions.
    grad_x, grad_v : :class:`torch.Tensor`, shape ``(N, 3)``
        Gradients of :math:`f` (or :math:`\ln f`) in position and velocity.

    Returns
    -------
    residual : :class:`torch.Tensor`, shape ``(N,)``
        Zero everywhere for a stationary DF in the true potential.
    """
    return (grad_phi * grad_v).sum(-1) - (v * grad_x).sum(-1)


def laplacian(
    phi: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact gradient and Laplacian :math:`\nabla^2 \Phi` of a scalar, by autograd.

    The graph is kept, so both results can be differentiated again (as a
    loss on them needs).

    Parameters
    ----------
    phi : callable
        Maps positions ``(N, 3)`` to values ``(N,)``, differentiably.
    x : :class:`torch.Tensor`, shape ``(N, 3)``
        Positions.

    Returns
    -------
    grad : :class:`torch.Tensor`, shape ``(N, 3)``
        :math:`\nabla\Phi`.
    lap : :class:`torch.Tensor`, shape ``(N,)``
        :math:`\nabla^2\Phi = \sum_i \partial^2\Phi/\partial x_i^2`.
    """
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(phi(x).sum(), x, create_graph=True)
    lap = torch.zeros_like(x[:, 0])
    for i in range(x.shape[1]):
        (second,) = torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)
        lap = lap + second[:, i]
    return grad, lap


def cbe_loss(
    residual: torch.Tensor, lap: torch.Tensor, negative_density_weight: float = 2.0
) -> torch.Tensor:
    r"""The loss of Green & Ting (2020), Eq. 3.

    .. math::

        L = \left\langle \sinh^{-1}\left|\frac{\partial f}{\partial t}\right|
            + \lambda \sinh^{-1}\left(\max\{-\nabla^2\Phi, 0\}\right) \right\rangle

    The first term asks for stationarity; the second penalises negative
    mass density, since Poisson's equation gives :math:`\nabla^2\Phi = 4\pi G\rho`.
    The :math:`\sinh^{-1}` is linear near zero and logarithmic for outliers.

    Parameters
    ----------
    residual : :class:`torch.Tensor`, shape ``(N,)``
        From :func:`stationarity_residual`.
    lap : :class:`torch.Tensor`, shape ``(N,)``
        :math:`\nabla^2\Phi` at the same positions.
    negative_density_weight : float
        Weight :math:`\lambda` of the positive-density penalty.

    Returns
    -------
    loss : :class:`torch.Tensor`, scalar
    """
    penalty = torch.asinh(torch.relu(-lap))
    return (torch.asinh(residual.abs()) + negative_density_weight * penalty).mean()
