"""Physics of stationarity: the collisionless Boltzmann residual and its loss."""

from __future__ import annotations

__all__ = ["cbe_loss", "laplacian", "stationarity_residual", "stationarity_terms"]

from collections.abc import Callable

import torch


def stationarity_residual(
    v: torch.Tensor,
    grad_phi: torch.Tensor,
    grad_x: torch.Tensor,
    grad_v: torch.Tensor,
    *,
    x: torch.Tensor | None = None,
    pattern_speed: float | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The time derivative of the DF implied by the collisionless Boltzmann equation.

    .. math::

        \frac{\partial f}{\partial t} =
            -\sum_i \left( v_i \frac{\partial f}{\partial x_i}
            - \frac{\partial \Phi}{\partial x_i} \frac{\partial f}{\partial v_i}
            \right)

    With a ``pattern_speed`` :math:`\Omega_p`, the DF is required to be
    stationary in the frame rotating at :math:`\Omega_p` about the z axis
    (a bar, spiral arms), while the coordinates, the DF's gradients and
    :math:`\Phi` (at this instant) stay those of the inertial frame. Such a
    DF turns with the pattern, :math:`\partial f/\partial t = -\Omega_p
    \partial f/\partial\phi`, with :math:`\partial/\partial\phi` the
    rotation of both positions and velocities, so the residual is

    .. math::

        \frac{\partial f}{\partial t} + \Omega_p \left(
            x \frac{\partial f}{\partial y} - y \frac{\partial f}{\partial x}
            + v_x \frac{\partial f}{\partial v_y}
            - v_y \frac{\partial f}{\partial v_x} \right),

    zero for a DF of the Jacobi integral :math:`E - \Omega_p L_z` in a
    potential that rotates rigidly at :math:`\Omega_p`.

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
    x : :class:`torch.Tensor`, shape ``(N, 3)``, optional
        Positions; needed with a ``pattern_speed``.
    pattern_speed : float or :class:`torch.Tensor` (scalar), optional
        :math:`\Omega_p` about the z axis, in the units of ``v / x``
        (a tensor may require grad, to fit it); positive is counterclockwise
        seen from +z.

    Returns
    -------
    residual : :class:`torch.Tensor`, shape ``(N,)``
        Zero everywhere for a stationary DF in the true potential.
    """
    return sum(_terms(v, grad_phi, grad_x, grad_v, x, pattern_speed))


def stationarity_terms(
    v: torch.Tensor,
    grad_phi: torch.Tensor,
    grad_x: torch.Tensor,
    grad_v: torch.Tensor,
    *,
    x: torch.Tensor | None = None,
    pattern_speed: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The residual of :func:`stationarity_residual` and the size of its terms.

    The size is :math:`|\nabla\Phi\cdot\nabla_v f| + |\vec v\cdot\nabla_x f|`,
    plus the size of the rotation term with a ``pattern_speed``: the
    residual over it lies in [-1, 1], 0 where the DF is stationary and
    :math:`\pm 1` where one term dominates. Arguments as for
    :func:`stationarity_residual`.

    Returns
    -------
    residual, size : :class:`torch.Tensor`, shape ``(N,)``
    """
    terms = _terms(v, grad_phi, grad_x, grad_v, x, pattern_speed)
    return sum(terms), sum(term.abs() for term in terms)


def _terms(v, grad_phi, grad_x, grad_v, x, pattern_speed) -> list[torch.Tensor]:
    """The terms of the residual: the force term, the streaming term and,
    with a pattern speed, the rotation term."""
    terms = [(grad_phi * grad_v).sum(-1), -(v * grad_x).sum(-1)]
    if pattern_speed is None:
        return terms
    if x is None:
        raise ValueError("a pattern_speed needs the positions x")
    turn = (
        x[:, 0] * grad_x[:, 1]
        - x[:, 1] * grad_x[:, 0]
        + v[:, 0] * grad_v[:, 1]
        - v[:, 1] * grad_v[:, 0]
    )
    return [*terms, pattern_speed * turn]


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
