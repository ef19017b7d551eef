r"""The pattern speed of a rotating pattern, from the continuity equation.

A density that turns rigidly about the z axis at :math:`\Omega_p`,
:math:`n(R, \phi - \Omega_p t, z)`, changes as
:math:`\partial_t n = -\Omega_p\,\partial_\phi n`, and the continuity equation
(the zeroth velocity moment of the collisionless Boltzmann equation) says
:math:`\partial_t n = -\nabla\cdot(n\bar{\vec{v}})`. Multiplied by a smooth
weight :math:`w(\vec{x})` that vanishes far out and integrated by parts,

.. math::

    \Omega_p \int n\,\partial_\phi w\,\mathrm{d}^3x
        = \int n\,\bar{\vec{v}}\cdot\nabla w\,\mathrm{d}^3x,
    \qquad \partial_\phi w = (\hat{z}\times\vec{x})\cdot\nabla w,

and both sides are sums over the stars: :math:`\Omega_p = \sum_i \vec{v}_i
\cdot\nabla w(\vec{x}_i) / \sum_i \partial_\phi w(\vec{x}_i)`, the method of
Tremaine & Weinberg (1984) with the full phase space of every star. It needs
no model of the DF and no gradients of it, so the flows' errors, which bias
:math:`\Omega_p` fitted together with :math:`\Phi` through the pointwise
Boltzmann equation, do not enter; only the stars' own Poisson noise does.

The weights are the m-fold harmonics :math:`w = \zeta^m\, e^{-R^2/2s^2}`,
:math:`\zeta = x + iy`, real and imaginary parts, at several scales
:math:`s`; their equations are combined by generalized least squares with the
covariance of the per-star terms, which also gives the uncertainty.
"""

from __future__ import annotations

__all__ = ["PatternSpeedMeasurement", "continuity_pattern_speed"]

from dataclasses import dataclass

import numpy as np

#: Quantiles of the stars' cylindrical radii that set the default scales
#: :math:`s` of the weights.
SCALE_QUANTILES = (0.2, 0.4, 0.6, 0.8)

#: A measurement whose relative uncertainty exceeds this is refused: the stars
#: show no rotating pattern of that symmetry to time.
MAX_RELATIVE_UNCERTAINTY = 0.5


@dataclass(frozen=True)
class PatternSpeedMeasurement:
    r"""A pattern speed measured from the stars by :func:`continuity_pattern_speed`.

    Attributes
    ----------
    value : float
        :math:`\Omega_p` [1 / time, in the units of v / x]; positive is
        counterclockwise seen from +z.
    uncertainty : float
        Its standard error from the stars' Poisson noise, same units.
    m : int
        Symmetry of the weights (2 for a bar).
    scales : tuple of float
        Scales :math:`s` of the weights [length].
    n_stars : int
        Stars used.
    """

    value: float
    uncertainty: float
    m: int
    scales: tuple[float, ...]
    n_stars: int

    def to_dict(self) -> dict:
        """JSON-able record, with ``method: "continuity"``."""
        return {
            "method": "continuity",
            "value": self.value,
            "uncertainty": self.uncertainty,
            "m": self.m,
            "scales": list(self.scales),
            "n_stars": self.n_stars,
        }


def _terms(
    x: np.ndarray, v: np.ndarray, m: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-star :math:`\\partial_\\phi w` and :math:`\\vec{v}\\cdot\\nabla w`
    for the real and imaginary parts of one weight, shape (2, n) each."""
    zeta = x[:, 0] + 1j * x[:, 1]
    g = np.exp(-(x[:, 0] ** 2 + x[:, 1] ** 2) / (2 * scale**2))
    w = zeta**m * g
    # d(zeta^m)/dx = m zeta^(m-1), d/dy = i m zeta^(m-1); dg/dx = -x g / s^2.
    inner = m * zeta ** (m - 1) * g
    v_dot_grad = v[:, 0] * (inner - w * x[:, 0] / scale**2) + v[:, 1] * (
        1j * inner - w * x[:, 1] / scale**2
    )
    turn = 1j * m * w  # the azimuthal derivative of zeta^m g
    return (
        np.stack([turn.real, turn.imag]),
        np.stack([v_dot_grad.real, v_dot_grad.imag]),
    )


def continuity_pattern_speed(
    x: np.ndarray,
    v: np.ndarray,
    *,
    m: int = 2,
    scales: tuple[float, ...] | None = None,
) -> PatternSpeedMeasurement:
    r"""Measure the pattern speed about the z axis from the stars' continuity equation.

    Valid for a sample that holds the whole pattern, complete wherever the
    weights reach (no selection function), with positions and velocities
    of every star.

    Parameters
    ----------
    x, v : array_like, shape (n, 3)
        Positions [length] and velocities [speed] about the pattern's
        centre, in consistent units (the result is in units of v / x).
    m : int
        Symmetry of the pattern: 2 for a bar or a two-armed spiral.
    scales : tuple of float, optional
        Scales of the weights [length]; by default the cylindrical radii
        at the quantiles :data:`SCALE_QUANTILES` of the stars.

    Returns
    -------
    PatternSpeedMeasurement

    Raises
    ------
    ValueError
        For bad shapes or values, or when the stars show no m-fold pattern
        that turns measurably (the uncertainty over half the value).
    """
    x = np.asarray(x, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or v.shape != x.shape:
        raise ValueError(
            f"x and v must both have shape (n, 3), got {x.shape} and {v.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(v).all()):
        raise ValueError(
            "x and v must be finite: the continuity equation needs the full "
            "phase space of every star (drop the stars without one)"
        )
    if int(m) != m or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    if scales is None:
        radius = np.hypot(x[:, 0], x[:, 1])
        scales = tuple(float(s) for s in np.quantile(radius, SCALE_QUANTILES))
    if not scales or not all(np.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be positive lengths, got {scales!r}")
    pairs = [_terms(x, v, int(m), s) for s in scales]
    turn = np.concatenate([p[0] for p in pairs])  # (k, n)
    flux = np.concatenate([p[1] for p in pairs])
    a, b = turn.sum(axis=1), flux.sum(axis=1)
    # Generalized least squares, with the covariance of the per-star
    # residuals at the previous estimate (from 0); three passes settle it.
    omega, information = 0.0, 0.0
    for _ in range(3):
        inverse = np.linalg.pinv(np.cov(flux - omega * turn) * len(x), rcond=1e-12)
        information = float(a @ inverse @ a)
        if not information > 0:
            break
        omega = float(a @ inverse @ b) / information
    uncertainty = float(information**-0.5) if information > 0 else np.inf
    if not uncertainty < MAX_RELATIVE_UNCERTAINTY * abs(omega):
        raise ValueError(
            f"the stars show no m = {m} pattern that turns measurably "
            f"(Omega_p = {omega:.3g} +- {uncertainty:.2g}): give the pattern "
            "speed as a number, or fit it together with the potential "
            "(pattern_speed='joint')"
        )
    return PatternSpeedMeasurement(
        value=omega,
        uncertainty=uncertainty,
        m=int(m),
        scales=tuple(float(s) for s in scales),
        n_stars=len(x),
    )
