r"""A radial map of a ball of positions onto all of space.

A catalogue limited in distance holds stars in a ball about the observer,
and their density drops to zero at its surface. A normalizing flow can only
approximate that step, and its smoothed and ringing version leaks into the
gradients of :math:`\ln f` in the outer shells, where half the volume lies.
:class:`BallMap` removes the step before the flows see it: the ball's
uniform density becomes a unit Gaussian on all of space, so the flows have
only the smooth ratio of the stars' density to a uniform one to learn, and
cannot put mass outside the ball.
"""

from __future__ import annotations

__all__ = ["BallMap"]

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from scipy.stats import chi

# ln r / R is kept below -_EDGE: stars on the surface (or rounded past it in
# float32) map to a finite radius, about 7.4 for this value.
_EDGE = 1e-12
# Points with ln r / R above this lie outside the ball by more than float32
# rounding of positions up to about 100 R from the origin; there the density is
# zero and the log-Jacobian -inf.
_OUTSIDE = 1e-5
# Radii below this fraction of R count as it (the map is smooth at r = 0).
_R_FLOOR = 1e-30
# The starting guesses of the quantile: ln psi tabulated against
# logit M = ln M - ln(1 - M) on _TABLE_SIZE points in _TABLE_LOGITS; below
# the table, the small-radius series M = sqrt(2/pi) psi^3 / 3.
_TABLE_LOGITS = (-90.0, 40.0)
_TABLE_SIZE = 4096
_NEWTON_STEPS = 4
_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2 / math.pi)


class BallMap:
    r"""A radial map that takes the ball :math:`|x - c| < R` onto all of space.

    A position at radius :math:`r` from the centre :math:`c` moves along its
    own direction to radius :math:`\psi(r) = G^{-1}\big((r/R)^3\big)`, where
    :math:`(r/R)^3` is the fraction of a uniform ball within :math:`r` and
    :math:`G` the same fraction for a three-dimensional unit Gaussian (the
    χ distribution with three degrees of freedom):

    .. math::

        x' = \frac{x - c}{r}\,\psi(r), \qquad
        \ln\left|\det\frac{\partial x'}{\partial x}\right|
            = \ln\frac{3}{R^3} - \tfrac12\ln\frac{2}{\pi} + \frac{\psi^2}{2}.

    Stars spread uniformly over the ball land on a unit Gaussian, the flows'
    base density, and any density :math:`p(x)` in the ball becomes
    :math:`p(x)\,\tfrac43\pi R^3` times the unit Gaussian: the surface,
    where :math:`p` drops to zero, goes to infinity, and the flows learn the
    smooth ratio to a uniform ball. The map is exact (the quantile is solved
    by Newton's method to float64 precision) and differentiable to any
    order in torch.

    Parameters
    ----------
    center : sequence of float, length 3
        :math:`c` [length].
    radius : float
        :math:`R > 0` [length].

    Examples
    --------
    >>> ball = BallMap([8.0, 0.0, 0.0], 1.5)
    >>> x = torch.tensor([[8.0, 0.0, 0.75]], dtype=torch.float64)
    >>> mapped, log_det = ball.forward(x)
    >>> bool(torch.allclose(ball.inverse(mapped), x))
    True
    """

    def __init__(self, center: Sequence[float], radius: float) -> None:
        self.center = torch.as_tensor(center, dtype=torch.float64).flatten()
        if self.center.numel() != 3 or not bool(torch.isfinite(self.center).all()):
            raise ValueError(f"center must be 3 finite numbers, got {center!r}")
        self.radius = float(radius)
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"radius must be positive and finite, got {radius!r}")
        self._log_det_offset = (
            math.log(3) - 3 * math.log(self.radius) - _LOG_SQRT_2_OVER_PI
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map positions ``(..., 3)``; returns ``x'`` and the log-Jacobian ``(...)``,
        in the dtype of ``x``.

        A point outside the ball (beyond the float32 rounding of its
        surface) has no image: it maps to the image of the surface along its
        ray, and its log-Jacobian is ``-inf``, so that a density through the
        map is zero there.
        """
        dx = x.to(torch.float64) - self.center.to(x.device)
        r2 = (dx * dx).sum(dim=-1).clamp_min((_R_FLOOR * self.radius) ** 2)
        log_r = 0.5 * torch.log(r2) - math.log(self.radius)
        log_u = log_r.clamp(max=-_EDGE)
        psi = _Chi3Quantile.apply(log_u)
        # psi / r, from logarithms so that it stays finite as r -> 0.
        scale = torch.exp(torch.log(psi) - log_u) / self.radius
        mapped = dx * scale[..., None]
        log_det = self._log_det_offset + 0.5 * psi * psi
        log_det = torch.where(log_r > _OUTSIDE, -math.inf, log_det)
        return mapped.to(x.dtype), log_det.to(x.dtype)

    def inverse(self, x_mapped: torch.Tensor) -> torch.Tensor:
        """Map positions ``(..., 3)`` back: the inverse of :meth:`forward`."""
        y = x_mapped.to(torch.float64)
        psi2 = (y * y).sum(dim=-1).clamp_min(_R_FLOOR**2)
        half = torch.full_like(psi2, 1.5)
        t = 0.5 * psi2
        # ln G(psi), from the lower tail where it is small and from the upper
        # tail (ln(1 - Q)) where it is near one.
        log_g = torch.where(
            t < 1.5,
            torch.log(torch.special.gammainc(half, t)),
            torch.log1p(-torch.special.gammaincc(half, t)),
        )
        # r / psi, from ln(r / (R psi)) = ln G / 3 - ln psi.
        ratio = self.radius * torch.exp(log_g / 3 - 0.5 * torch.log(psi2))
        return (self.center.to(y.device) + y * ratio[..., None]).to(x_mapped.dtype)

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Whether positions ``(N, 3)`` lie strictly inside the ball."""
        dx = np.asarray(x, dtype=float) - self.center.numpy()
        return np.linalg.norm(dx, axis=-1) < self.radius

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters; :meth:`from_dict` rebuilds exactly."""
        return {"center": self.center.tolist(), "radius": self.radius}

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> BallMap:
        """Rebuild a :class:`BallMap` from :meth:`to_dict` output."""
        return cls(**params)

    def __repr__(self) -> str:
        center = ", ".join(f"{c:.4g}" for c in self.center.tolist())
        return f"BallMap(center=[{center}], radius={self.radius:.4g})"


class _Chi3Quantile(torch.autograd.Function):
    r""":math:`\psi = G^{-1}(u^3)` from :math:`\ln u \le 0`, with
    :math:`d\psi/d\ln u = 3u^3 / g(\psi)`, :math:`g = G'`, written in torch
    operations on the output so that higher derivatives follow."""

    @staticmethod
    def forward(log_u: torch.Tensor) -> torch.Tensor:
        return _chi3_quantile(log_u)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        log_u, psi = ctx.saved_tensors
        # 3 u^3 / g(psi), g = sqrt(2/pi) psi^2 exp(-psi^2/2), in logarithms.
        log_slope = (
            math.log(3)
            + 3 * log_u
            - _LOG_SQRT_2_OVER_PI
            - 2 * torch.log(psi)
            + 0.5 * psi * psi
        )
        return grad * torch.exp(log_slope)


def _chi3_quantile(log_u: torch.Tensor) -> torch.Tensor:
    """The χ₃ quantile of M = u³ from ln u (float64), by Newton's method on
    ln G (M <= 1/2) or ln(1 - G) (M > 1/2), which keeps both tails precise."""
    log_m = 3 * log_u
    log_q = torch.log(-torch.expm1(log_m))
    grid, table = (t.to(log_u.device) for t in _start_table())
    logit = log_m - log_q
    step = (grid[-1] - grid[0]) / (grid.numel() - 1)
    where = ((logit - grid[0]) / step).clamp(0, grid.numel() - 1.001)
    i = where.floor().long()
    frac = where - i
    start = torch.exp((1 - frac) * table[i] + frac * table[i + 1])
    series = torch.exp((math.log(3) + log_m - _LOG_SQRT_2_OVER_PI) / 3)
    psi = torch.where(logit < grid[0], series, start)
    lower = log_m < math.log(0.5)
    half = torch.full_like(psi, 1.5)
    for _ in range(_NEWTON_STEPS):
        t = 0.5 * psi * psi
        log_g = _LOG_SQRT_2_OVER_PI + 2 * torch.log(psi) - t
        log_p = torch.log(torch.special.gammainc(half, t))
        log_c = torch.log(torch.special.gammaincc(half, t))
        # F = ln P - ln M (lower) or ln Q_target - ln Q (upper), both rising.
        f = torch.where(lower, log_p - log_m, log_q - log_c)
        slope = torch.exp(log_g - torch.where(lower, log_p, log_c))
        psi = psi - f / slope
    return psi


@cache
def _start_table() -> tuple[torch.Tensor, torch.Tensor]:
    """ln psi on a grid of logit M, for Newton's starting guesses."""
    grid = np.linspace(*_TABLE_LOGITS, _TABLE_SIZE)
    m, q = expit(grid), expit(-grid)
    psi = np.where(grid < 0, chi.ppf(m, 3), chi.isf(q, 3))
    return torch.as_tensor(grid), torch.as_tensor(np.log(psi))
