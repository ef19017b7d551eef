r"""The truncated likelihood: flows of the DF itself, from a survey's stars.

A survey with selection function :math:`S(\vec x)` sees stars with density

.. math::

    p_{obs}(\vec x, \vec v) = \frac{f(\vec x, \vec v)\, S(\vec x)}{Z}, \qquad
    Z = \int f S \, d^3x\, d^3v = \mathbb E_f[S].

Flows trained on the plain likelihood learn :math:`f S`, with its edges
(a distance limit is a step), which they smooth, so their gradients are wrong
near the edges. Maximising :math:`\langle \ln f \rangle - \ln Z` instead, over
the stars, makes the flows model :math:`f`: smooth across the edges, and
free wherever :math:`S = 0`. :class:`SelectionNormalizer` gives each member's
:math:`\ln Z_k` for the loss, estimated from draws of that member, with the
score-function gradient :math:`\nabla \ln Z = \mathbb E_f[S\, \nabla \ln f]
/ \mathbb E_f[S]` from the same draws.
"""

from __future__ import annotations

__all__ = ["SelectionNormalizer"]

from collections.abc import Callable

import numpy as np
import torch

from .flows import ROW_MULTIPLE, FactorizedFlow
from .runtime import member_generator
from .standardizer import Standardizer

# Stream of runtime.member_generator for the fixed draws that estimate
# ln Z at validation (flows.INIT_STREAM, CONDITIONAL_STREAM and the
# training's batch stream are 0-2).
_VALIDATION_STREAM = 3
# Draws per member for ln Z at validation: its Monte Carlo error is about
# sqrt((1 - Z) / (Z n)), 0.7% for Z = 0.5.
_VALIDATION_DRAWS = 2**14
# Floor of a sum of completeness values before its logarithm.
_TINY = 1e-30


class SelectionNormalizer:
    r"""Each member's :math:`\ln Z_k = \ln \mathbb E_{p_k}[S]`, for training.

    Parameters
    ----------
    selection : callable
        :math:`S` at positions ``(N, 3)`` in the training data's units
        (numpy in, numpy out), for example
        :meth:`~gala_deeppotential.selection.BoundSelection.completeness`.
    flow : BatchedFlow or FactorizedFlow
        The members. A factorized member draws and scores only its
        positions, :math:`p_k(x)`, which alone carries :math:`Z`.
    scaler : :class:`~gala_deeppotential.standardizer.Standardizer`
        Maps the flows' coordinates back to the data's.
    n_draws : int
        Draws per member and training step.
    seed, first_member : int
        As for :func:`~gala_deeppotential.training.train_flows`; they seed the
        fixed validation draws of each member.
    """

    def __init__(
        self,
        selection: Callable[[np.ndarray], np.ndarray],
        flow: torch.nn.Module,
        scaler: Standardizer,
        n_draws: int,
        seed: int,
        first_member: int,
    ) -> None:
        if int(n_draws) != n_draws or n_draws < ROW_MULTIPLE or n_draws % ROW_MULTIPLE:
            raise ValueError(
                f"selection_draws must be a positive multiple of {ROW_MULTIPLE}, "
                f"got {n_draws!r}"
            )
        self.selection, self.flow, self.scaler = selection, flow, scaler
        self.n_draws = int(n_draws)
        self.factorized = isinstance(flow, FactorizedFlow)
        self.dim = 3 if self.factorized else 6
        k = flow.n_members
        self.val_noise = torch.stack(
            [
                torch.randn(
                    _VALIDATION_DRAWS,
                    self.dim,
                    generator=member_generator(
                        seed, first_member + i, _VALIDATION_STREAM
                    ),
                )
                for i in range(k)
            ]
        )

    def _draw(self, z: torch.Tensor) -> torch.Tensor:
        """Members' points in their own coordinates from noise (K, n, dim)."""
        param = next(self.flow.parameters())
        z = z.to(param)
        if self.factorized:
            return self.flow.positions.inverse(z)
        return self.flow.inverse(z)

    def _log_prob(self, s: torch.Tensor) -> torch.Tensor:
        if self.factorized:
            return self.flow.positions.log_prob(s)
        return self.flow.log_prob(s)

    def completeness(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`S` at positions ``x`` (..., 3) in the data's units, shape (...),
        float64 on the CPU."""
        x = x.detach().to("cpu", torch.float64)
        weight = np.asarray(self.selection(x.reshape(-1, 3).numpy()), dtype=np.float64)
        return torch.from_numpy(weight.reshape(x.shape[:-1]))

    def _completeness(self, s: torch.Tensor) -> torch.Tensor:
        """:math:`S` at the positions of points ``s`` (K, n, dim), shape (K, n)."""
        s = s.detach().to("cpu", torch.float64)
        if self.factorized:
            s = torch.cat([s, torch.zeros_like(s)], dim=-1)
        return self.completeness(self.scaler.inverse(s)[..., :3])

    def loss_term(self, generators: list[torch.Generator]) -> torch.Tensor:
        r"""Each member's :math:`\ln Z_k`, shape (K,), differentiable.

        The value is the Monte Carlo estimate :math:`\ln \frac1n \sum_j
        S(x_j)` over ``n_draws`` fresh draws of each member (from its own
        generator, so that members stay independent); the gradient is
        :math:`\sum_j S_j \nabla \ln p_k(x_j) / \sum_j S_j`, which is
        :math:`\nabla \ln Z_k` in expectation.
        """
        z = torch.stack(
            [torch.randn(self.n_draws, self.dim, generator=g) for g in generators]
        )
        with torch.no_grad():
            s = self._draw(z)
        weight = self._completeness(s).to(s)
        total = weight.sum(dim=1)
        share = weight / total.clamp_min(_TINY)[:, None]
        score = (share * self._log_prob(s)).sum(dim=1)
        log_z = torch.log(total.clamp_min(_TINY) / self.n_draws)
        # A member with no draw inside the selection has no estimate of Z at
        # this step; its data term alone moves it towards the stars.
        return torch.where(total > 0, log_z + score - score.detach(), 0.0)

    def validation(self) -> torch.Tensor:
        """Each member's :math:`\\ln Z_k` from fixed draws, shape (K,), on the CPU."""
        with torch.no_grad():
            s = self._draw(self.val_noise)
        weight = self._completeness(s).mean(dim=1)
        return torch.log(weight.clamp_min(_TINY)).to(torch.float32)
