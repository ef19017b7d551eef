"""A radial map of positions that turns the stars' density profile into a Gaussian."""

from __future__ import annotations

__all__ = ["RadialProfileMap"]

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.special import expit, log_expit
from scipy.stats import chi

# The profile is fitted to the radii's quantiles at levels evenly spaced in
# logit, from the level with _FIT_TAIL stars beyond it on either side; the
# spline's end nodes lie at the levels with _NODE_TAIL stars beyond them, deep
# enough in the core and the halo that the profile's local power laws there
# are its asymptotic ones (a Plummer core's logit M has slope 3 - 3 (r/b)^2).
_N_FIT_LEVELS = 300
_FIT_TAIL = 20
_NODE_TAIL = 100
_N_NODES = 10
# The tables reach this far (in ln r) beyond the outer nodes, with this many
# points: the profile's power laws continue linearly in logit M against ln r.
_TABLE_MARGIN = 12.0
_TABLE_SIZE = 8192
# Radii below this are treated as this (the map is continuous at r = 0).
_R_FLOOR = 1e-30
_LOG_SQRT_2_OVER_PI = 0.5 * np.log(2 / np.pi)


class RadialProfileMap:
    r"""A radial map of positions that takes a fitted density profile to a 3-D Gaussian.

    About a centre :math:`c`, a position at radius :math:`r` moves along its
    own direction to radius :math:`\psi(r) = G^{-1}(M(r))`, where :math:`M`
    is the fraction of the stars within :math:`r` (a smooth fit) and
    :math:`G` the same fraction for a three-dimensional unit Gaussian (the
    χ distribution with three degrees of freedom):

    .. math::

        x' = c + (x - c)\,\frac{\psi(r)}{r}, \qquad
        \ln\left|\det\frac{\partial x'}{\partial x}\right|
            = \ln\psi'(r) + 2 \ln\frac{\psi(r)}{r}.

    Stars that follow :math:`M` land on a unit Gaussian, which is the flows'
    base density, so the flows have only the departures from the fitted
    profile to learn: a core's curvature, or a cusp's divergence, is carried
    by the map rather than smoothed away by the flows. :math:`M` is fitted
    as :math:`\operatorname{logit} M` against :math:`\ln r`, a natural cubic
    spline through ``_N_NODES`` nodes fitted by least squares to the radii's
    quantiles; it continues linearly beyond its end nodes, i.e. as power laws
    :math:`M \propto r^k` inside and :math:`1 - M \propto r^{-m}` outside.
    :math:`\ln\psi - \ln r` and :math:`\ln\psi'` are tabulated on a fine grid
    in :math:`\ln r` and evaluated by cubic Hermite interpolation, so the
    map is differentiable in torch.

    Parameters
    ----------
    center : sequence of float, length 3
        :math:`c` [length].
    node_log_radii, node_logits : sequence of float
        The spline's nodes: :math:`\ln r` [ln length] (increasing) and
        :math:`\operatorname{logit} M` there (increasing).
    """

    def __init__(
        self,
        center: Sequence[float],
        node_log_radii: Sequence[float],
        node_logits: Sequence[float],
    ) -> None:
        self.center = torch.as_tensor(center, dtype=torch.float64).flatten()
        self.node_log_radii = np.asarray(node_log_radii, dtype=float)
        self.node_logits = np.asarray(node_logits, dtype=float)
        if self.center.numel() != 3:
            raise ValueError(f"center must have 3 entries, got {self.center.numel()}")
        s, ell = self.node_log_radii, self.node_logits
        if s.ndim != 1 or s.shape != ell.shape or s.size < 2:
            raise ValueError("the nodes must be two 1-D arrays of one length >= 2")
        if not (np.all(np.diff(s) > 0) and np.all(np.isfinite(ell))):
            raise ValueError("node_log_radii must increase and node_logits be finite")
        self._tabulate(CubicSpline(s, ell, bc_type="natural"))

    @classmethod
    def fit(
        cls, positions: np.ndarray, center: Sequence[float] | None = None
    ) -> RadialProfileMap:
        """Fit the profile to positions ``(N, 3)`` about ``center`` (default: median).

        Raises
        ------
        ValueError
            If fewer than 16 positions lie away from the centre, or no
            increasing profile fits them.
        """
        x = np.asarray(positions, dtype=float)
        if center is None:
            center = np.median(x, axis=0)
        r = np.linalg.norm(x - np.asarray(center, dtype=float), axis=1)
        r = r[r > 0]
        if r.size < 16:
            raise ValueError("a radial profile needs at least 16 stars off the centre")
        fit_levels = _logit_levels(_FIT_TAIL / r.size, _N_FIT_LEVELS)
        s_fit = np.log(np.quantile(r, fit_levels))
        ell_fit = np.log(fit_levels) - np.log1p(-fit_levels)
        for n_nodes in (_N_NODES, 6, 4, 2):
            levels = _logit_levels(_NODE_TAIL / r.size, n_nodes)
            nodes = np.unique(np.log(np.quantile(r, levels)))
            if nodes.size < 2:
                continue
            basis = np.stack(
                [
                    CubicSpline(nodes, unit, bc_type="natural")(s_fit)
                    for unit in np.eye(nodes.size)
                ],
                axis=1,
            )
            values = np.linalg.lstsq(basis, ell_fit, rcond=None)[0]
            spline = CubicSpline(nodes, values, bc_type="natural")
            if np.all(_logit_profile(spline, np.linspace(*nodes[[0, -1]], 512))[1] > 0):
                return cls(center, nodes, values)
        raise ValueError("no increasing radial profile fits the stars' radii")

    # ------------------------------------------------------------ tables

    def _tabulate(self, spline: CubicSpline) -> None:
        s = np.linspace(
            self.node_log_radii[0] - _TABLE_MARGIN,
            self.node_log_radii[-1] + _TABLE_MARGIN,
            _TABLE_SIZE,
        )
        ell, slope = _logit_profile(spline, s)
        if not np.all(slope > 0):
            raise ValueError("the radial profile must increase with radius")
        log_m, log_q = log_expit(ell), log_expit(-ell)
        psi = np.where(ell < 0, chi.ppf(np.exp(log_m), 3), chi.isf(np.exp(log_q), 3))
        # Deep inside, G(t) = sqrt(2/pi) t^3/3 to 1e-4 relative, where ppf
        # loses precision.
        tiny = log_m < np.log(1e-9)
        psi[tiny] = np.exp((np.log(3) + log_m[tiny] - _LOG_SQRT_2_OVER_PI) / 3)
        log_psi = np.log(psi)
        log_dg = _LOG_SQRT_2_OVER_PI + 2 * log_psi - 0.5 * psi**2
        log_dpsi_ds = log_m + log_q + np.log(slope) - log_dg
        # The two tabulated functions of s = ln r: a = ln(psi/r), whose
        # slope is psi_s/psi - 1, and b = ln(dpsi/dr) = ln psi_s - s.
        a = log_psi - s
        da = np.exp(log_dpsi_ds - log_psi) - 1
        b = log_dpsi_ds - s
        db = np.gradient(b, s, edge_order=2)
        self._s0 = float(s[0])
        self._h = float(s[1] - s[0])
        self._s_end = float(s[-1])
        self._tables = torch.as_tensor(np.stack([a, da, b, db]), dtype=torch.float64)
        self._log_psi = torch.as_tensor(log_psi, dtype=torch.float64)
        self._s = torch.as_tensor(s, dtype=torch.float64)

    def _hermite(self, s: torch.Tensor, value: int) -> torch.Tensor:
        """Table ``value`` (with its slope in the next row) at ``s``; linear beyond."""
        tables = self._tables.to(s)
        f, d = tables[value], tables[value + 1]
        inside, i, tau = self._locate(s)
        tau2, tau3 = tau * tau, tau * tau * tau
        out = (
            (2 * tau3 - 3 * tau2 + 1) * f[i]
            + (tau3 - 2 * tau2 + tau) * self._h * d[i]
            + (3 * tau2 - 2 * tau3) * f[i + 1]
            + (tau3 - tau2) * self._h * d[i + 1]
        )
        edge = torch.where(s < self._s0, d[0], d[-1])
        return out + edge * (s - inside)

    def _radius(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dx = x - self.center.to(x)
        r2 = (dx * dx).sum(dim=-1).clamp_min(_R_FLOOR**2)
        return dx, 0.5 * torch.log(r2)

    # ------------------------------------------------------------ the map

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map positions ``(..., 3)``; returns ``x'`` and the log-Jacobian ``(...)``."""
        dx, s = self._radius(x)
        a = self._hermite(s, 0)
        log_det = self._hermite(s, 2) + 2 * a
        return self.center.to(x) + dx * torch.exp(a)[..., None], log_det

    def inverse(self, x_mapped: torch.Tensor) -> torch.Tensor:
        """Map positions ``(..., 3)`` back: the inverse of :meth:`forward`."""
        dx, log_psi = self._radius(x_mapped)
        table = self._log_psi.to(log_psi)
        grid = self._s.to(log_psi)
        k = torch.searchsorted(table, log_psi.detach().contiguous()).clamp(
            1, table.numel() - 1
        )
        weight = (log_psi - table[k - 1]) / (table[k] - table[k - 1])
        s = grid[k - 1] + weight * (grid[k] - grid[k - 1])
        for _ in range(3):  # Newton on ln psi(s) = s + a(s)
            a = self._hermite(s, 0)
            slope = 1 + self._slope_a(s)
            s = s - (s + a - log_psi) / slope
        a = self._hermite(s, 0)
        return self.center.to(x_mapped) + dx * torch.exp(-a)[..., None]

    def _slope_a(self, s: torch.Tensor) -> torch.Tensor:
        """d a / d s by the Hermite interpolant of the slope table (linear)."""
        slope = self._tables.to(s)[1]
        _, i, tau = self._locate(s)
        return (1 - tau) * slope[i] + tau * slope[i + 1]

    def _locate(
        self, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``s`` clamped to the tables, its interval and the fraction across it."""
        inside = s.clamp(self._s0, self._s_end)
        t = (inside - self._s0) / self._h
        i = t.detach().floor().long().clamp(0, self._tables.shape[1] - 2)
        return inside, i, t - i

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters; :meth:`from_dict` rebuilds exactly."""
        return {
            "center": self.center.tolist(),
            "node_log_radii": self.node_log_radii.tolist(),
            "node_logits": self.node_logits.tolist(),
        }

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> RadialProfileMap:
        """Rebuild a :class:`RadialProfileMap` from :meth:`to_dict` output."""
        return cls(**params)


def _logit_levels(tail: float, n: int) -> np.ndarray:
    """``n`` levels evenly spaced in logit from ``tail`` to ``1 - tail`` (at most
    from 1% to 99%)."""
    edge = np.log(max(min(tail, 0.01), 1e-12))
    edge -= np.log1p(-np.exp(edge))
    return expit(np.linspace(edge, -edge, n))


def _logit_profile(spline: CubicSpline, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logit M and its slope at ``s``: the spline, continued linearly beyond its
    end nodes (a natural spline's second derivative vanishes there, so this is
    twice differentiable)."""
    lo, hi = spline.x[0], spline.x[-1]
    inside = np.clip(s, lo, hi)
    slope = spline(inside, 1)
    return spline(inside) + slope * (s - inside), slope
