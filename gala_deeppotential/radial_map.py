"""Radial maps of phase space: the stars' density profile to a Gaussian, and their
velocity ellipsoid to a sphere."""

from __future__ import annotations

__all__ = ["RadialProfileMap", "VelocityEllipsoidMap", "local_center"]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from scipy.stats import chi

# The profile is the enclosed fraction of a Zhao sphere with outer slope
# 3 + alpha, M(r) = (1 + (a/r)^alpha)^(-(3 - gamma)/alpha): a Plummer core
# (alpha = 2, gamma = 0), a Dehnen cusp (alpha = 1, 0 < gamma < 3, Hernquist
# at gamma = 1) and what lies between, fitted to the radii by maximum
# likelihood within these bounds on alpha and gamma.
_ALPHA_BOUNDS = (0.2, 10.0)
_GAMMA_BOUNDS = (0.0, 2.95)
# It is held as a natural cubic spline through _N_NODES nodes at
# alpha ln(r/a) from -_NODE_SPAN to +_NODE_SPAN, where its local power laws
# are its asymptotic ones to e^-_NODE_SPAN.
_N_NODES = 64
_NODE_SPAN = 12.0
# The tables reach this far (in ln r) beyond the outer nodes, with this many
# points: the profile's power laws continue linearly in logit M against ln r.
_TABLE_MARGIN = 12.0
_TABLE_SIZE = 8192
# Radii below this are treated as this (the map is continuous at r = 0).
_R_FLOOR = 1e-30
# A profile whose logit M rises more slowly than this against ln r at its inner
# node, 3 - gamma for a density cusp rho ~ r^-gamma (3 for a core), is cusped:
# gamma > 0.5. It is trusted from _CUSP_MIN_STARS stars: fits to 2^12 stars
# (seeds 1-10) give 2.86-3.00 for Plummer, 1.89-2.27 for Hernquist and
# 1.45-1.66 for gamma = 3/2; at 2^10 stars Plummer reached down to 2.53.
_CUSP_SLOPE = 2.5
_CUSP_MIN_STARS = 2**12
_LOG_SQRT_2_OVER_PI = 0.5 * np.log(2 / np.pi)
# The velocity ellipsoid: second moments in up to _N_SHELLS shells whose edges
# are evenly spaced in the logit of the fraction of stars inside, the end ones
# holding _MIN_SHELL_STARS, fitted by splines with _N_VELOCITY_NODES nodes.
_N_SHELLS = 40
_MIN_SHELL_STARS = 64
_N_VELOCITY_NODES = 6
# The end nodes lie at the radii holding 2% and 98% of the stars (logit
# ±3.9); the innermost and outermost shells inform the continuations.
_NODE_LOGIT = 3.9
# The two dispersions are drawn together within the radius holding this
# fraction of the stars.
_CORE_FRACTION = 0.01
# The tangential speed's power: applied for a central anisotropy |beta_0| of
# at least _MIN_ANISOTROPY, kept within [_MIN_POWER, 1 / _MIN_POWER]; speeds
# below _W_FLOOR count as it.
_MIN_ANISOTROPY = 0.2
_MIN_POWER = 0.5
_W_FLOOR = 1e-30


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
    by the map rather than smoothed away by the flows. :meth:`fit` takes
    :math:`M` from the Zhao spheres with outer density slope
    :math:`3 + \alpha`,

    .. math::

        M(r) = \left[1 + (a/r)^\alpha\right]^{-(3 - \gamma)/\alpha},
        \qquad \rho \propto r^{-\gamma} (r^\alpha + a^\alpha)^{-(3 - \gamma
        + \alpha)/\alpha},

    which hold the Plummer core (:math:`\alpha = 2, \gamma = 0`) and the
    Dehnen cusps (:math:`\alpha = 1`) exactly, with :math:`a`,
    :math:`\alpha` and :math:`\gamma` fitted to the radii by maximum
    likelihood: three numbers that 10^4 stars fix well, and a profile whose
    curvature (the map's contribution to :math:`\nabla_x \ln f`) has no
    sampling wiggles. Whatever the family misses is left to the flows. The
    map holds :math:`\operatorname{logit} M` against :math:`\ln r` as a
    natural cubic spline through nodes (any increasing profile can be given
    as nodes), continued linearly beyond its end nodes, i.e. as power laws
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
            If fewer than 16 positions lie away from the centre.
        """
        x = np.asarray(positions, dtype=float)
        if center is None:
            center = np.median(x, axis=0)
        r = np.linalg.norm(x - np.asarray(center, dtype=float), axis=1)
        r = r[r > 0]
        if r.size < 16:
            raise ValueError("a radial profile needs at least 16 stars off the centre")
        log_a, alpha, gamma = _fit_zhao_profile(np.log(r))
        nodes = log_a + np.linspace(-_NODE_SPAN, _NODE_SPAN, _N_NODES) / alpha
        return cls(center, nodes, _zhao_logit(nodes, log_a, alpha, gamma))

    @property
    def inner_slope(self) -> float:
        """d logit M / d ln r at the inner node: 3 - gamma for a density that
        goes as r^-gamma at the centre."""
        spline = CubicSpline(self.node_log_radii, self.node_logits, bc_type="natural")
        return float(spline(self.node_log_radii[0], 1))

    def is_cusped(self, n_stars: int) -> bool:
        """Whether the density fitted to ``n_stars`` stars has a cusp: an inner
        slope below 2.5 (gamma above 0.5), from at least 2^12 stars (False for
        fewer: too few to tell a cusp from a core)."""
        return n_stars >= _CUSP_MIN_STARS and self.inner_slope < _CUSP_SLOPE

    # ------------------------------------------------------------ tables

    def _tabulate(self, spline: CubicSpline) -> None:
        s = np.linspace(
            self.node_log_radii[0] - _TABLE_MARGIN,
            self.node_log_radii[-1] + _TABLE_MARGIN,
            _TABLE_SIZE,
        )
        ell, slope = _linear_beyond(spline, s)
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


class VelocityEllipsoidMap:
    r"""A map of velocities that takes the stars' fitted velocity ellipsoid to a sphere.

    About a centre :math:`c`, a velocity splits into its radial part along
    :math:`\hat r = (x - c)/|x - c|` and the tangential rest, each divided
    by the stars' dispersion in it at that radius,

    .. math::

        v' = \frac{v_r}{\sigma_r(r)}\,\hat r
            + \frac{v - v_r \hat r}{\sigma_t(r)},
        \qquad v_r = v\cdot\hat r, \qquad
        \ln\left|\det\frac{\partial v'}{\partial v}\right|
            = -\ln\sigma_r(r) - 2\ln\sigma_t(r),

    where :math:`\sigma_r^2 = \langle v_r^2\rangle` and
    :math:`\sigma_t^2 = \langle |v - v_r\hat r|^2\rangle / 2` in shells.
    At fixed position the map is linear in :math:`v`, so the Jacobian of the
    whole phase-space map is this velocity part times the positions' one.
    A radially or tangentially anisotropic sphere, whose velocity ellipsoid
    is elongated along :math:`\hat r` or across it, with axes that turn with
    position and shrink outwards, then has velocities that are about
    isotropic and of unit dispersion at every position, and the flows have
    only the departures from that to learn.

    :math:`\ln\sigma_r` and :math:`\ln\sigma_t` are natural cubic splines
    in :math:`\ln r`, fitted by least squares to the stars' second moments
    in shells, and continued beyond the outer node linearly (a power law in
    :math:`r`) and inside the inner node :math:`r_1` as
    :math:`\ln\sigma(r_1) + \tfrac{1}{2} k (r^2/r_1^2 - 1)`, with the
    spline's slope :math:`k` there, so that they are flat at the centre: a
    slope there would put a term :math:`k/r` in the gradient of
    :math:`\ln f`, for the flows to undo. Within a core radius :math:`r_0`
    the two are drawn together,

    .. math::

        \ln\sigma_{r,t} \to m + \frac{r^2}{r^2 + r_0^2}
            \left(\ln\sigma_{r,t} - m\right), \qquad
        m = \tfrac{1}{2}(\ln\sigma_r + \ln\sigma_t),

    so that the map is isotropic at the centre, where :math:`\hat r` turns
    fastest, and smooth there: without it, any difference of the two
    dispersions at :math:`r \to 0` would put a :math:`1/r` term in the
    gradient of :math:`\ln f`.

    A DF that goes as :math:`L^{-2\beta_0}` on nearly radial orbits (as
    Cuddeford's and constant-anisotropy models do, :math:`\beta_0` being the
    central anisotropy) has at every position a factor
    :math:`w^{-2\beta_0}` in the tangential speed :math:`w`: a zero
    (tangential bias) or a divergence (radial bias) on the radial axis of
    velocity space, which the flows would smooth. Where the fitted
    anisotropy at the inner node stands clear of zero, the tangential part
    of :math:`v'` is then raised to the power :math:`\alpha = 1 - \beta_0`
    (its direction kept), which takes that factor out and adds
    :math:`\ln\alpha + (2\alpha - 2)\ln w'` to the log-Jacobian.

    Parameters
    ----------
    center : sequence of float, length 3
        :math:`c` [length].
    node_log_radii : sequence of float
        The splines' nodes, :math:`\ln r` [ln length], increasing.
    log_sigma_r, log_sigma_t : sequence of float
        :math:`\ln\sigma_r` and :math:`\ln\sigma_t` [ln speed] at the nodes.
    core_radius : float
        :math:`r_0 > 0` [length]; :meth:`fit` takes the radius that holds
        1% of the stars.
    tangential_power : float
        :math:`\alpha`, in [0.5, 2]; 1 for none. :meth:`fit` takes
        :math:`1 - \beta_0` from the dispersions at the inner node when
        :math:`|\beta_0|` exceeds 0.2 and four of its standard errors, and 1
        otherwise.
    """

    def __init__(
        self,
        center: Sequence[float],
        node_log_radii: Sequence[float],
        log_sigma_r: Sequence[float],
        log_sigma_t: Sequence[float],
        core_radius: float,
        tangential_power: float = 1.0,
    ) -> None:
        self.center = torch.as_tensor(center, dtype=torch.float64).flatten()
        self.core_radius = float(core_radius)
        if not (np.isfinite(self.core_radius) and self.core_radius > 0):
            raise ValueError(f"core_radius must be positive, got {core_radius!r}")
        self.tangential_power = float(tangential_power)
        if not _MIN_POWER <= self.tangential_power <= 1 / _MIN_POWER:
            raise ValueError(
                f"tangential_power must lie in [{_MIN_POWER}, {1 / _MIN_POWER}], "
                f"got {tangential_power!r}"
            )
        self.node_log_radii = np.asarray(node_log_radii, dtype=float)
        self.log_sigma_r = np.asarray(log_sigma_r, dtype=float)
        self.log_sigma_t = np.asarray(log_sigma_t, dtype=float)
        if self.center.numel() != 3:
            raise ValueError(f"center must have 3 entries, got {self.center.numel()}")
        s = self.node_log_radii
        if s.ndim != 1 or s.size < 2 or not np.all(np.diff(s) > 0):
            raise ValueError("node_log_radii must be 1-D, increasing, of length >= 2")
        for name in ("log_sigma_r", "log_sigma_t"):
            values = getattr(self, name)
            if values.shape != s.shape or not np.all(np.isfinite(values)):
                raise ValueError(f"{name} must be finite, one value per node")
        # Per interval, the cubic's coefficients (highest power first) in
        # s - s_i, for ln sigma_r and ln sigma_t: shape (2, 4, n - 1).
        coefficients = [
            CubicSpline(s, values, bc_type="natural").c
            for values in (self.log_sigma_r, self.log_sigma_t)
        ]
        self._coefficients = torch.as_tensor(np.stack(coefficients))
        self._nodes = torch.as_tensor(s)

    @classmethod
    def fit(
        cls,
        positions: np.ndarray,
        velocities: np.ndarray,
        center: Sequence[float] | None = None,
    ) -> VelocityEllipsoidMap:
        """Fit the dispersion profiles to stars ``(N, 3)`` about ``center``
        (default: the positions' median).

        Raises
        ------
        ValueError
            If fewer than 256 stars lie away from the centre, or a shell of
            them has no velocity spread.
        """
        x = np.asarray(positions, dtype=float)
        v = np.asarray(velocities, dtype=float)
        if center is None:
            center = np.median(x, axis=0)
        dx = x - np.asarray(center, dtype=float)
        r = np.linalg.norm(dx, axis=1)
        keep = r > 0
        r, v, r_hat = r[keep], v[keep], dx[keep] / r[keep, None]
        n_shells = min(_N_SHELLS, r.size // _MIN_SHELL_STARS)
        if n_shells < 4:
            raise ValueError(
                f"a velocity ellipsoid needs at least {4 * _MIN_SHELL_STARS} stars "
                "off the centre"
            )
        # Shells between quantile levels evenly spaced in logit, so that the
        # core and the halo are resolved as finely as the middle; each
        # shell's moments weigh by its number of stars in the fit.
        tail = np.log(_MIN_SHELL_STARS) - np.log(r.size - _MIN_SHELL_STARS)
        edges = np.quantile(r, expit(np.linspace(tail, -tail, n_shells - 1)))
        shell = np.searchsorted(edges, r)
        counts = np.bincount(shell, minlength=n_shells)
        v_r = np.sum(v * r_hat, axis=1)
        v_t2 = np.sum(v * v, axis=1) - v_r**2
        moments = np.stack(
            [
                np.bincount(shell, v_r**2, n_shells) / counts,
                np.bincount(shell, v_t2, n_shells) / counts / 2,
            ]
        )
        if not np.all(moments > 0):
            raise ValueError("a shell of stars has no velocity spread")
        s = np.log([np.median(r[shell == i]) for i in range(n_shells)])
        levels = expit(np.linspace(-_NODE_LOGIT, _NODE_LOGIT, _N_VELOCITY_NODES))
        nodes = np.unique(np.log(np.quantile(r, levels)))
        log_sigma = [
            _least_squares_nodes(nodes, s, 0.5 * np.log(m), np.sqrt(counts))
            for m in moments
        ]
        core = float(np.quantile(r, _CORE_FRACTION))
        inner = int(np.sum(r < np.exp(nodes[0])))
        power = _tangential_power(log_sigma[1][0] - log_sigma[0][0], inner)
        return cls(center, nodes, *log_sigma, core_radius=core, tangential_power=power)

    @property
    def anisotropy(self) -> np.ndarray:
        r""":math:`\beta = 1 - \sigma_t^2/\sigma_r^2` at the nodes."""
        return -np.expm1(2 * (self.log_sigma_t - self.log_sigma_r))

    def is_anisotropic(self, n_stars: int) -> bool:
        """Whether the fitted anisotropy at some node stands clear of zero, by
        0.2 and by four standard errors for ``n_stars`` stars shared among the
        nodes."""
        per_node = max(n_stars / self.node_log_radii.size, 1.0)
        threshold = max(_MIN_ANISOTROPY, 4 * math.sqrt(3 / per_node))
        return bool(np.max(np.abs(self.anisotropy)) >= threshold)

    def _log_sigmas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x - c`` over its radius, and ln sigma_r, ln sigma_t there (2, ...)."""
        dx = x - self.center.to(x)
        r = torch.sqrt((dx * dx).sum(dim=-1).clamp_min(_R_FLOOR**2))
        s = torch.log(r)
        nodes = self._nodes.to(s)
        inside = s.clamp(nodes[0], nodes[-1])
        i = torch.searchsorted(nodes, inside.detach().contiguous()) - 1
        i = i.clamp(0, nodes.numel() - 2)
        h = inside - nodes[i]
        c = self._coefficients.to(s)[:, :, i]  # (2, 4, ...)
        value = ((c[:, 0] * h + c[:, 1]) * h + c[:, 2]) * h + c[:, 3]
        slope = (3 * c[:, 0] * h + 2 * c[:, 1]) * h + c[:, 2]
        # Outside, a power law; inside, a term in r^2 with the same value and
        # slope at the inner node, flat at the centre.
        inward = 0.5 * torch.expm1(2 * (s - inside).clamp(max=0))
        value = value + slope * torch.where(s < inside, inward, s - inside)
        mean = value.mean(dim=0)
        taper = r * r / (r * r + self.core_radius**2)
        return dx / r[..., None], mean + taper * (value - mean)

    def forward(
        self, x: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map velocities ``(..., 3)`` at positions ``x``; returns ``v'`` and the
        log-Jacobian ``(...)``."""
        r_hat, (log_r, log_t) = self._log_sigmas(x)
        radial, tangential = _split(v, r_hat)
        tangential = tangential * torch.exp(-log_t)[..., None]
        log_det = -log_r - 2 * log_t
        alpha = self.tangential_power
        if alpha != 1:
            tangential, log_w = _power(tangential, alpha)
            log_det = log_det + math.log(alpha) + (2 * alpha - 2) * log_w
        return radial * torch.exp(-log_r)[..., None] + tangential, log_det

    def inverse(self, x: torch.Tensor, v_mapped: torch.Tensor) -> torch.Tensor:
        """Map velocities ``(..., 3)`` at positions ``x`` back: the inverse of
        :meth:`forward`."""
        r_hat, (log_r, log_t) = self._log_sigmas(x)
        radial, tangential = _split(v_mapped, r_hat)
        if self.tangential_power != 1:
            tangential = _power(tangential, 1 / self.tangential_power)[0]
        return (
            radial * torch.exp(log_r)[..., None]
            + tangential * torch.exp(log_t)[..., None]
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters; :meth:`from_dict` rebuilds exactly."""
        return {
            "center": self.center.tolist(),
            "node_log_radii": self.node_log_radii.tolist(),
            "log_sigma_r": self.log_sigma_r.tolist(),
            "log_sigma_t": self.log_sigma_t.tolist(),
            "core_radius": self.core_radius,
            "tangential_power": self.tangential_power,
        }

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> VelocityEllipsoidMap:
        """Rebuild a :class:`VelocityEllipsoidMap` from :meth:`to_dict` output."""
        return cls(**params)


def _split(v: torch.Tensor, r_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``v`` as its part along the unit vectors ``r_hat`` and the rest."""
    radial = (v * r_hat).sum(dim=-1, keepdim=True) * r_hat
    return radial, v - radial


def _power(tangential: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors ``(..., 3)`` with their length w raised to the power ``alpha``
    (their direction kept), and ln w."""
    w2 = (tangential * tangential).sum(dim=-1).clamp_min(_W_FLOOR**2)
    log_w = 0.5 * torch.log(w2)
    return tangential * torch.exp((alpha - 1) * log_w)[..., None], log_w


def _tangential_power(log_ratio: float, n_inner: int) -> float:
    """The power of the tangential speed that takes out a central anisotropy.

    ``log_ratio`` is ln(sigma_t / sigma_r) at the inner node, where ``n_inner``
    stars lie inside. A DF that goes as L^(-2 beta_0) on nearly radial orbits
    has, at fixed position, a factor w^(-2 beta_0) in the tangential speed w,
    and beta_0 is its central anisotropy; raising w to the power
    1 - beta_0 takes that factor out. It is taken out only where beta_0 stands
    clear of zero (by _MIN_ANISOTROPY and by four of its standard errors,
    about sqrt(3 / n)), since a small power would put a singularity into a
    smooth DF.
    """
    beta = 1 - math.exp(2 * log_ratio)
    if abs(beta) < max(_MIN_ANISOTROPY, 4 * math.sqrt(3 / max(n_inner, 1))):
        return 1.0
    return float(np.clip(1 - beta, _MIN_POWER, 1 / _MIN_POWER))


def _least_squares_nodes(
    nodes: np.ndarray, s: np.ndarray, values: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """The values at ``nodes`` of the natural cubic spline closest to ``values``
    at ``s``, by least squares with the residuals times ``weights``; beyond its
    end nodes the spline is continued as :class:`VelocityEllipsoidMap`
    evaluates it (:func:`_flat_inward`)."""
    basis = np.stack(
        [
            _flat_inward(CubicSpline(nodes, unit, bc_type="natural"), s)
            for unit in np.eye(nodes.size)
        ],
        axis=1,
    )
    return np.linalg.lstsq(basis * weights[:, None], values * weights, rcond=None)[0]


def _zhao_log_m(
    log_r: np.ndarray, log_a: float, alpha: float, gamma: float
) -> np.ndarray:
    """ln M at ln r for :class:`RadialProfileMap`'s family of profiles."""
    return (3 - gamma) / alpha * log_expit(alpha * (log_r - log_a))


def _zhao_logit(
    log_r: np.ndarray, log_a: float, alpha: float, gamma: float
) -> np.ndarray:
    """logit M at ln r for the same family."""
    log_m = _zhao_log_m(log_r, log_a, alpha, gamma)
    return log_m - np.log(-np.expm1(log_m))


def _zhao_negative_log_likelihood(theta: np.ndarray, log_r: np.ndarray) -> float:
    """Minus the mean log density of ln r (dM / d ln r) for (ln a, ln alpha, gamma):
    d ln M / d ln r = (3 - gamma) expit(-alpha ln(r/a))."""
    log_a, log_alpha, gamma = theta
    alpha = math.exp(log_alpha)
    log_m = _zhao_log_m(log_r, log_a, alpha, gamma)
    log_slope = log_expit(-alpha * (log_r - log_a))
    return -float(np.mean(log_m + log_slope)) - math.log(3 - gamma)


def _fit_zhao_profile(log_r: np.ndarray) -> tuple[float, float, float]:
    """ln a, alpha and gamma of the family that fits radii ``exp(log_r)`` best."""
    start = np.array([np.median(log_r), math.log(2.0), 0.5])
    bounds = [(None, None), tuple(np.log(_ALPHA_BOUNDS)), _GAMMA_BOUNDS]
    best = minimize(
        _zhao_negative_log_likelihood,
        start,
        args=(log_r,),
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-14, "gtol": 1e-10},
    )
    log_a, log_alpha, gamma = best.x
    return float(log_a), math.exp(log_alpha), float(gamma)


def _linear_beyond(spline: CubicSpline, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A natural spline and its slope at ``s``, continued linearly beyond its
    end nodes (its second derivative vanishes there, so this is twice
    differentiable)."""
    lo, hi = spline.x[0], spline.x[-1]
    inside = np.clip(s, lo, hi)
    slope = spline(inside, 1)
    return spline(inside) + slope * (s - inside), slope


def _flat_inward(spline: CubicSpline, s: np.ndarray) -> np.ndarray:
    """A natural spline at ``s``, continued linearly beyond its outer node and
    inside its inner node :math:`s_1` as a term in :math:`r^2 = e^{2s}` with the
    same value and slope there, flat at the centre (as
    :class:`VelocityEllipsoidMap` evaluates its splines)."""
    lo, hi = spline.x[0], spline.x[-1]
    inside = np.clip(s, lo, hi)
    beyond = np.where(s < inside, 0.5 * np.expm1(2 * (s - inside)), s - inside)
    return spline(inside) + spline(inside, 1) * beyond


def local_center(x: np.ndarray) -> np.ndarray | None:
    """The centre of a local volume of points (N, 3), or None if they surround 0.

    Points are a local volume when their median position lies farther from
    the origin than their median distance from that median.
    """
    center = np.median(x, axis=0)
    spread = float(np.median(np.linalg.norm(x - center, axis=1)))
    return center if float(np.linalg.norm(center)) > spread else None
