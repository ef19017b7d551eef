"""Anisotropic tracers of spherical potentials: Cuddeford's f(Q) L^(-2β₀) family."""

from __future__ import annotations

__all__ = ["CuddefordDF", "anisotropy_profile"]

import astropy.units as u
import numpy as np
from gala.potential import PotentialBase
from scipy.special import betaincinv, gamma

from ..directions import random_directions
from ._common import _r2, _sample_size
from .eddington import TracerDensity, _SphericalTracer, abel_inverse


class CuddefordDF(_SphericalTracer):
    r"""An anisotropic stationary DF of a tracer in a spherical potential.

    Cuddeford's (1991) family,

    .. math::

        f(\vec{x}, \vec{v}) = L^{-2\beta_0} F(Q), \qquad
        Q = \Psi(r) - \frac{v^2}{2} - \frac{L^2}{2 r_a^2},

    with the relative potential :math:`\Psi = \Phi(r_{\max}) - \Phi` and the
    angular momentum :math:`L`, has the anisotropy profile

    .. math::

        \beta(r) = 1 - \frac{\sigma_t^2}{2\sigma_r^2}
                 = \frac{r^2 + \beta_0 r_a^2}{r^2 + r_a^2}.

    ``anisotropy_radius`` alone gives the Osipkov–Merritt models (isotropic
    inside :math:`r_a`, radial outside); ``beta`` alone a constant
    anisotropy :math:`\beta_0` (negative for tangential orbits); neither,
    the isotropic DF of :class:`EddingtonDF`. With
    :math:`g(r) = \nu(r)\, r^{2\beta_0} (1 + r^2/r_a^2)^{1 - \beta_0}` for the
    tracer density :math:`\nu` normalised to unit mass,

    .. math::

        F(Q) = \frac{D^{3/2 - \beta_0} g}{2^{3/2 - \beta_0} \pi^{3/2}
                     \Gamma(1 - \beta_0)},

    a Riemann–Liouville derivative in Ψ, evaluated on a logarithmic radius
    grid (see :func:`~gala_deeppotential.mocks.eddington.abel_inverse`) and
    interpolated in :math:`\ln F` against :math:`\ln Q`.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        Any spherical gala potential (about its ``origin``).
    density : :class:`~gala.potential.PotentialBase` or callable, optional
        The tracer, as in :class:`EddingtonDF`; default the potential's own
        density.
    beta : float
        :math:`\beta_0 < 1`, the anisotropy at the centre (everywhere when
        ``anisotropy_radius`` is None). A tracer whose density falls as
        :math:`r^{-\gamma}` at the centre needs :math:`\beta_0 \le \gamma/2`.
    anisotropy_radius : :class:`~astropy.units.Quantity` [length] or float, optional
        :math:`r_a` (a float in the potential's length unit). None: infinite.
    r_range : tuple of :class:`~astropy.units.Quantity` [length] or float, optional
        Radii ``(r_min, r_max)`` of the grid; see :class:`EddingtonDF`.
    n_grid : int
        Radius grid points.

    Raises
    ------
    ValueError
        For ``beta >= 1``, a non-positive ``anisotropy_radius``, the problems
        listed in :class:`EddingtonDF`, and a model with :math:`F < 0`
        somewhere (too radial: for the Plummer sphere, Osipkov–Merritt needs
        :math:`r_a \gtrsim 0.75 b`).

    Examples
    --------
    >>> from gala.potential import PlummerPotential
    >>> om = CuddefordDF(PlummerPotential(m=1.0, b=1.0, units=None),
    ...                  anisotropy_radius=1.0)
    >>> x, v = om.sample(20_000, seed=1)
    >>> r = np.linalg.norm(x, axis=1)
    >>> outer = r > 3.0
    >>> v_r = np.sum(x * v, axis=1)[outer] / r[outer]
    >>> v_t2 = np.sum(v[outer] ** 2, axis=1) - v_r**2
    >>> beta = 1 - np.mean(v_t2) / (2 * np.mean(v_r**2))
    >>> bool(0.85 < beta < 0.95)  # beta(r) = r^2 / (r^2 + 1) is 0.9 at r = 3
    True
    """

    _kind = "anisotropic"
    _negative_f_fix = (
        "Use a less radial model (a larger anisotropy_radius or a smaller "
        "beta) or a consistent tracer-potential pair"
    )

    def __init__(
        self,
        potential: PotentialBase,
        density: TracerDensity | None = None,
        *,
        beta: float = 0.0,
        anisotropy_radius: u.Quantity | float | None = None,
        r_range: tuple[u.Quantity | float, u.Quantity | float] | None = None,
        n_grid: int = 4096,
    ) -> None:
        beta = float(beta)
        if not (np.isfinite(beta) and beta < 1):
            raise ValueError(f"beta must be a finite number below 1, got {beta!r}")
        self.beta = beta
        self.anisotropy_radius = _radius(anisotropy_radius, potential)
        super().__init__(potential, density, r_range=r_range, n_grid=n_grid)

    # ------------------------------------------------------------ set-up

    @property
    def _inv_ra2(self) -> float:
        r_a = self.anisotropy_radius
        return 0.0 if r_a is None else 1.0 / r_a**2

    def _invert(self, r, nu, psi, dpsi_dlnr) -> np.ndarray:
        beta = self.beta
        g = nu * r ** (2 * beta) * (1 + r**2 * self._inv_ra2) ** (1 - beta)
        order = 1.5 - beta
        return abel_inverse(r, g, psi, dpsi_dlnr, order) / (
            2**order * np.pi**1.5 * gamma(1 - beta)
        )

    # ------------------------------------------------------------ the DF

    def invariants(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`Q` and :math:`L^2` of (N, 3) arrays, each shape (N,)."""
        x = np.asarray(x, dtype=float)
        v = np.asarray(v, dtype=float)
        phi = self._evaluate(self.potential.energy, x.T)
        dx = x - self._origin
        l2 = np.sum(np.cross(dx, v) ** 2, axis=-1)
        q = self._phi_max - phi - 0.5 * _r2(v) - 0.5 * l2 * self._inv_ra2
        return q, l2

    def log_f(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r""":math:`\ln f(x, v)` for (N, 3) arrays; :math:`-\infty` where Q <= 0."""
        q, l2 = self.invariants(x, v)
        with np.errstate(divide="ignore"):
            return np.log(self._f_binding(q)) - self.beta * np.log(l2)

    def grad_log_f(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients :math:`(\nabla_x \ln f, \nabla_v \ln f)`, each ``(N, 3)``.

        With :math:`\vec{r} = \vec{x} - \vec{x}_0` from the potential's
        origin,

        .. math::

            \nabla \ln f = \frac{d\ln F}{d\ln Q} \frac{\nabla Q}{Q}
                - \beta_0 \frac{\nabla L^2}{L^2}, \qquad
            \nabla_x Q = -\nabla\Phi - \frac{v^2 \vec{r}
                - (\vec{r}\cdot\vec{v})\,\vec{v}}{r_a^2}, \qquad
            \nabla_v Q = -\vec{v} - \frac{r^2 \vec{v}
                - (\vec{r}\cdot\vec{v})\,\vec{r}}{r_a^2},

        with :math:`\nabla_x L^2 = 2 (v^2 \vec{r} - (\vec{r}\cdot\vec{v})
        \vec{v})` and :math:`\nabla_v L^2 = 2 (r^2 \vec{v} -
        (\vec{r}\cdot\vec{v}) \vec{r})`; :math:`d\ln F/d\ln Q` as in
        :meth:`EddingtonDF.grad_log_f`.

        Parameters
        ----------
        x : :class:`numpy.ndarray` [length]
            Positions, shape ``(N, 3)``, in the potential's unit system.
        v : :class:`numpy.ndarray` [speed]
            Velocities, shape ``(N, 3)``.

        Returns
        -------
        grad_x : :class:`numpy.ndarray` [1 / length]
        grad_v : :class:`numpy.ndarray` [time / length]

        Raises
        ------
        ValueError
            If any point has :math:`Q \le 0`, where f vanishes, or (for
            :math:`\beta_0 \ne 0`) :math:`L = 0`, where ln f is singular.
        """
        x = np.asarray(x, dtype=float)
        v = np.asarray(v, dtype=float)
        q, l2 = self.invariants(x, v)
        if np.any(q <= 0):
            raise ValueError(
                f"{np.count_nonzero(q <= 0)} points have Q <= 0, where f = 0 "
                "and ln f has no gradient; evaluate where f > 0 only"
            )
        if self.beta != 0 and np.any(l2 <= 0):
            raise ValueError(
                "ln f is singular at L = 0 for beta != 0; evaluate off the "
                "radial orbits"
            )
        dx = x - self._origin
        rv = np.sum(dx * v, axis=-1)[:, None]
        dl2_dx = 2 * (_r2(v)[:, None] * dx - rv * v)
        dl2_dv = 2 * (_r2(dx)[:, None] * v - rv * dx)
        grad_phi = self._evaluate(self.potential.gradient, x.T).T
        dq_dx = -grad_phi - 0.5 * self._inv_ra2 * dl2_dx
        dq_dv = -v - 0.5 * self._inv_ra2 * dl2_dv
        slope = np.interp(np.log(q), self._log_eps, self._dlogf_dlogeps)
        scale = (slope / q)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            ang = np.where(l2 > 0, self.beta / l2, 0.0)[:, None]
        return scale * dq_dx - ang * dl2_dx, scale * dq_dv - ang * dl2_dv

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Draw ``n`` stars: positions and velocities, each (n, 3).

        Radii follow the tracer's cumulative mass. With
        :math:`s = \sqrt{1 + r^2/r_a^2}` and :math:`\vec{w} = (v_r,
        s\,\vec{v}_t)`, :math:`Q = \Psi - w^2/2` and
        :math:`f\,d^3v \propto w^{2 - 2\beta_0} F(\Psi - w^2/2)\,dw\,
        \sin^{1 - 2\beta_0}\eta\,d\eta\,d\psi`, for the angle η between
        :math:`\vec{w}` and the radial direction: each is drawn by its inverse
        CDF, and the tangential part divided by s.
        """
        n = _sample_size(n)
        rng = np.random.default_rng(seed)
        r = self._radius_at_mass(1.0 - rng.random(n))
        psi = self._phi_max - self._on_axis(self.potential.energy, r)
        w = self._speed_fraction(
            psi, 1.0 - rng.random(n), power=2 - 2 * self.beta
        ) * np.sqrt(2 * psi)
        eta = _polar_angle(self.beta, rng.random(n))
        turn = 2 * np.pi * rng.random(n)
        r_hat = random_directions(n, rng)
        e1, e2 = _tangent_basis(r_hat)
        v_t = w * np.sin(eta) / np.sqrt(1 + r**2 * self._inv_ra2)
        v = (w * np.cos(eta))[:, None] * r_hat + v_t[:, None] * (
            np.cos(turn)[:, None] * e1 + np.sin(turn)[:, None] * e2
        )
        return self._origin + r[:, None] * r_hat, v


def anisotropy_profile(
    r: np.ndarray, beta: float = 0.0, anisotropy_radius: float | None = None
) -> np.ndarray:
    r""":math:`\beta(r) = (r^2 + \beta_0 r_a^2)/(r^2 + r_a^2)` of :class:`CuddefordDF`.

    ``r`` and ``anisotropy_radius`` in one length unit.
    """
    r = np.asarray(r, dtype=float)
    if anisotropy_radius is None:
        return np.full(r.shape, float(beta))
    ra2 = float(anisotropy_radius) ** 2
    return (r**2 + beta * ra2) / (r**2 + ra2)


def _radius(value, potential: PotentialBase) -> float | None:
    if value is None:
        return None
    if isinstance(value, u.Quantity):
        value = value.to_value(potential.units["length"])
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(
            f"anisotropy_radius must be a positive length, got {value!r}; pass "
            "None for no Osipkov-Merritt term"
        )
    return value


def _polar_angle(beta: float, uniform: np.ndarray) -> np.ndarray:
    r"""Draw η in (0, π) with density :math:`\sin^{1 - 2\beta}\eta`.

    With :math:`u = (1 - \cos\eta)/2` the density is
    :math:`[u (1 - u)]^{-\beta}`, a Beta(1 - β, 1 - β) variate.
    """
    u_ = betaincinv(1 - beta, 1 - beta, uniform)
    return np.arccos(np.clip(1 - 2 * u_, -1.0, 1.0))


def _tangent_basis(r_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each (N, 3) unit vector and each other."""
    helper = np.zeros_like(r_hat)
    along_z = np.abs(r_hat[:, 2]) > 0.9
    helper[~along_z, 2] = 1.0
    helper[along_z, 0] = 1.0
    e1 = np.cross(r_hat, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(r_hat, e1)
