"""Isotropic tracers of spherical potentials, by Eddington inversion."""

from __future__ import annotations

__all__ = ["EddingtonDF", "TracerDensity", "eddington_sample"]

from collections.abc import Callable

import astropy.units as u
import numpy as np
from gala.dynamics import PhaseSpacePosition
from gala.potential import PotentialBase
from gala.units import DimensionlessUnitSystem, UnitSystem
from scipy.integrate import cumulative_trapezoid
from scipy.optimize import brentq
from scipy.special import gamma

from ..directions import random_directions
from ..phasespace import strip_units
from ._common import _phase_space_position, _r2, _sample_size

#: A tracer density for :class:`EddingtonDF`: a gala potential (its mass
#: density is used) or a function of radius.
TracerDensity = PotentialBase | Callable[[np.ndarray], np.ndarray]

# Unnormalised directions along which sphericity is checked, and the largest
# relative spread between them that still counts as spherical (gala's C
# potentials agree to ~1e-15; a flattening of q = 0.999 gives ~1e-4).
_CHECK_DIRECTIONS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, 0, -1], [1, 1, 1]]
)
_SPHERICAL_RTOL = 1e-6
# A negative f(E) smaller than this fraction of max f is rounding noise.
_NEGATIVE_F_RTOL = 1e-6
# Nodes of the per-star speed CDF in q = v / v_esc, and the largest number of
# (star, node) pairs held at once (32 MB of float64).
_N_SPEED = 256
_CHUNK = 2**22


class _SphericalTracer:
    """A tracer of a spherical potential whose DF is found by an Abel inversion.

    Holds what isotropic and anisotropic inversions share: the radius grid,
    the checks of the input, the tracer's cumulative mass and the radius
    sampler, and a table of the energy factor of the DF against binding
    energy. Subclasses give ``_invert``, which turns the tracer density on the
    grid into that table.
    """

    def __init__(
        self,
        potential: PotentialBase,
        density: TracerDensity | None = None,
        *,
        r_range: tuple[u.Quantity | float, u.Quantity | float] | None = None,
        n_grid: int = 4096,
    ) -> None:
        if not isinstance(potential, PotentialBase):
            raise TypeError(
                f"potential must be a gala potential, got {type(potential).__name__}"
            )
        if int(n_grid) != n_grid or n_grid < 64:
            raise ValueError(f"n_grid must be an integer >= 64, got {n_grid!r}")
        self.potential = potential
        self.units: UnitSystem = potential.units
        self._origin = np.asarray(potential.origin, dtype=float)
        tracer = potential if density is None else density
        if isinstance(tracer, PotentialBase):
            tracer_density = tracer.density
        elif callable(tracer):
            tracer_density = None
        else:
            raise TypeError(
                "density must be a gala potential, a function of radius or None, "
                f"got {type(tracer).__name__}"
            )
        r = np.geomspace(*self._radial_range(r_range), int(n_grid))
        self._check_spherical(potential.energy, r, "the potential")
        if tracer_density is not None:
            self._check_spherical(tracer_density, r, "the tracer density")
            nu = self._on_axis(tracer_density, r)
        else:
            nu = strip_units(tracer(r))
        self._tabulate(r, nu)

    # ------------------------------------------------------------ set-up

    def _evaluate(self, method, xyz: np.ndarray) -> np.ndarray:
        """``method`` (a potential's energy, gradient, density) at (3, N) positions."""
        if not isinstance(self.units, DimensionlessUnitSystem):
            xyz = xyz * self.units["length"]
        return strip_units(method(xyz))

    def _on_axis(self, method, r: np.ndarray, direction=(1.0, 0.0, 0.0)) -> np.ndarray:
        """``method`` at ``origin + r n̂``, for unit vector n̂ along ``direction``."""
        n = np.asarray(direction, dtype=float)
        return self._evaluate(
            method, self._origin[:, None] + np.outer(n / np.linalg.norm(n), r)
        )

    def _radial_range(self, r_range) -> tuple[float, float]:
        length = self.units["length"]
        if r_range is not None:
            lo, hi = (
                float(x.to_value(length)) if isinstance(x, u.Quantity) else float(x)
                for x in r_range
            )
            if not (np.isfinite(hi) and 0 < lo < hi):
                raise ValueError(
                    f"r_range must satisfy 0 < r_min < r_max, got {r_range}"
                )
            return lo, hi
        phi0 = self._on_axis(self.potential.energy, np.zeros(1))[0]
        probe = np.geomspace(1e-8, 1e8, 321)
        outside = np.flatnonzero(
            self._on_axis(self.potential.energy, probe) >= phi0 / 2
        )
        if not (np.isfinite(phi0) and phi0 < 0) or outside.size == 0:
            raise ValueError(
                "cannot choose a radius grid: the potential's central value "
                f"Φ(0) = {phi0:.3g} is not finite and negative, or Φ does not "
                "rise to Φ(0)/2 within r = 1e8; pass r_range=(r_min, r_max)"
            )
        # Refined by root finding, so that the grid scales with the system.
        r_half = brentq(
            lambda r: self._on_axis(self.potential.energy, np.array([r]))[0] - phi0 / 2,
            probe[max(outside[0] - 1, 0)],
            probe[outside[0]],
            rtol=1e-14,
        )
        return 1e-4 * r_half, 1e4 * r_half

    def _check_spherical(self, method, r: np.ndarray, what: str) -> None:
        radii = r[:: max(1, r.size // 8)]
        values = np.array([self._on_axis(method, radii, d) for d in _CHECK_DIRECTIONS])
        spread = np.max(np.abs(values - values[0])) / np.max(np.abs(values[0]))
        if not spread <= _SPHERICAL_RTOL:
            raise ValueError(
                f"{what} is not spherical about the potential's origin: it varies "
                f"by a fraction {spread:.1e} between directions at the same radius. "
                "Eddington inversion needs a spherical potential and tracer, "
                "sharing one centre"
            )

    def _tabulate(self, r: np.ndarray, nu: np.ndarray) -> None:
        """Tabulate Ψ, the tracer's cumulative mass and f on the grid ``r``."""
        if nu.shape != r.shape or not np.all(np.isfinite(nu) & (nu > 0)):
            bad = r[~(np.isfinite(nu) & (nu > 0))] if nu.shape == r.shape else r
            raise ValueError(
                "the tracer density must be positive and finite over r_range = "
                f"({r[0]:.3g}, {r[-1]:.3g}) [{self.units['length']}] "
                f"(it is not at r = {bad[0]:.3g}); narrow r_range or fix the density"
            )
        phi = self._on_axis(self.potential.energy, r)
        force = self._on_axis(self.potential.gradient, r)
        g_r = force[0] if force.ndim == 2 else force
        if not np.all(g_r > 0):
            raise ValueError(
                "the potential's radial force is not attractive at every radius "
                f"of r_range = ({r[0]:.3g}, {r[-1]:.3g}); Eddington inversion "
                "needs Φ to increase outwards"
            )
        s = np.log(r)
        dlnnu = np.gradient(np.log(nu), s, edge_order=2)
        slope = -dlnnu[0]
        if slope >= 3:
            raise ValueError(
                f"the tracer density falls as r^-{slope:.2f} at r_min, so its mass "
                "diverges at the centre"
            )
        mass = np.concatenate(
            [[0.0], cumulative_trapezoid(4 * np.pi * r**3 * nu, s)]
        ) + 4 * np.pi * nu[0] * r[0] ** 3 / (3 - slope)
        total = mass[-1]
        self._inner_slope = 3 - slope
        self._log_mass = np.log(mass / total)
        self._log_r = s
        self._phi_max = phi[-1]
        psi = phi[-1] - phi
        f = self._invert(r, nu / total, psi, -r * g_r)
        if np.any(f < -_NEGATIVE_F_RTOL * np.max(np.abs(f))):
            where = phi[1:-1][f < 0]
            raise ValueError(
                f"the inversion gives f < 0 for energies {where.min():.3g} <= E "
                f"<= {where.max():.3g}: no {self._kind} stationary DF makes this "
                "tracer density in this potential (e.g. a cored tracer in a "
                "cusped potential, or a density that does not fall with radius). "
                f"{self._negative_f_fix}"
            )
        self.r_grid = r
        self.energy_table = phi[1:-1]
        self.f_table = np.clip(f, np.finfo(float).tiny, None)
        # Ascending binding energy, for np.interp.
        self._log_eps = np.log(psi[1:-1])[::-1]
        self._log_f = np.log(self.f_table)[::-1]
        # Second-order slopes at the nodes, interpolated linearly: a continuous
        # d ln f / d ln E, where the slope of the ln f interpolant would jump
        # at every node (by up to 2e-3 of itself in the Hernquist cusp).
        self._dlogf_dlogeps = np.gradient(self._log_f, self._log_eps, edge_order=2)

    # ------------------------------------------------------------ the DF

    def _f_binding(self, eps: np.ndarray) -> np.ndarray:
        """f at binding energies ``eps``; zero where ``eps <= 0``.

        Outside the table, f is held at its end values: only stars within
        the grid's innermost or beyond its outermost node reach there.
        """
        out = np.zeros(np.shape(eps))
        bound = eps > 0
        out[bound] = np.exp(np.interp(np.log(eps[bound]), self._log_eps, self._log_f))
        return out

    def to_phase_space_position(self, x: np.ndarray, v: np.ndarray):
        """Wrap (N, 3) arrays as a :class:`~gala.dynamics.PhaseSpacePosition`."""
        return _phase_space_position(x, v, self.units)

    def _radius_at_mass(self, fraction: np.ndarray) -> np.ndarray:
        """Inverse of the tracer's cumulative mass, a power law inside r_min."""
        log_u = np.log(fraction)
        log_r = np.interp(log_u, self._log_mass, self._log_r)
        inner = log_u < self._log_mass[0]
        log_r[inner] = (
            self._log_r[0] + (log_u[inner] - self._log_mass[0]) / self._inner_slope
        )
        return np.exp(log_r)

    def _speed_fraction(
        self, psi: np.ndarray, uniform: np.ndarray, power: float = 2.0
    ) -> np.ndarray:
        r"""Draw :math:`q = w/w_{\max}` with density :math:`q^p f(\Psi (1 - q^2))`.

        :math:`w_{\max} = \sqrt{2\Psi}`; for an isotropic DF :math:`w` is the
        speed and :math:`p = 2`.

        Each star's CDF is the trapezoid integral over ``_N_SPEED`` nodes,
        inverted by linear interpolation; stars are done in chunks.
        """
        q = np.linspace(0.0, 1.0, _N_SPEED)
        out = np.empty(psi.size)
        for rows in np.array_split(
            np.arange(psi.size), max(1, psi.size * _N_SPEED // _CHUNK)
        ):
            pdf = q**power * self._f_binding(psi[rows, None] * (1 - q**2))
            cdf = cumulative_trapezoid(pdf, q, axis=1, initial=0.0)
            cdf /= cdf[:, -1:]
            target = uniform[rows, None]
            # cdf[0] = 0 < target <= 1 = cdf[-1], so 1 <= k <= _N_SPEED - 1.
            k = np.minimum(np.sum(cdf < target, axis=1), _N_SPEED - 1)
            lo = np.take_along_axis(cdf, k[:, None] - 1, axis=1)[:, 0]
            hi = np.take_along_axis(cdf, k[:, None], axis=1)[:, 0]
            out[rows] = q[k - 1] + (uniform[rows] - lo) / (hi - lo) * (q[k] - q[k - 1])
        return out


class EddingtonDF(_SphericalTracer):
    r"""The isotropic DF of a tracer in a spherical potential, by Eddington inversion.

    With the relative potential :math:`\Psi(r) = \Phi(r_{\max}) - \Phi(r)`,
    the binding energy :math:`\mathcal{E} = \Phi(r_{\max}) - E` and the
    tracer density :math:`\nu(r)`, normalised to unit mass within
    :math:`r_{\max}`, Eddington's formula (Binney & Tremaine 2008, eq. 4.46b)

    .. math::

        f(\mathcal{E}) = \frac{1}{\sqrt{8}\,\pi^2} \left[
            \int_0^{\mathcal{E}} \frac{d^2\nu}{d\Psi^2}
            \frac{d\Psi}{\sqrt{\mathcal{E} - \Psi}}
            + \frac{1}{\sqrt{\mathcal{E}}} \left(\frac{d\nu}{d\Psi}\right)_{\Psi=0}
        \right]

    is evaluated numerically on a logarithmic radius grid. The derivative
    :math:`h = d\nu/d\Psi = (d\nu/d\ln r)/(d\Psi/d\ln r)` comes from finite
    differences of :math:`\ln\nu` and the potential's exact radial force.
    Taking :math:`h` linear in :math:`\Psi` on each grid interval, the
    substitution :math:`t = \sqrt{\mathcal{E} - \Psi}` integrates each
    interval exactly, to :math:`2\Delta h / (t_i + t_{i+1})`, so the
    :math:`1/\sqrt{\mathcal{E}-\Psi}` singularity never meets a quadrature
    node and no second difference of noisy :math:`h` is taken.
    :math:`f` is tabulated at the grid's binding energies and interpolated in
    :math:`\ln f` against :math:`\ln\mathcal{E}`.

    The tracer is truncated at :math:`r_{\max}`: stars with
    :math:`E \geq \Phi(r_{\max})` are absent, which changes the density by
    :math:`\nu(r_{\max})`, far below sampling noise for the default range.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        Any spherical gala potential (about its ``origin``).
    density : :class:`~gala.potential.PotentialBase` or callable, optional
        The tracer: a gala potential whose mass density is the tracer density
        (centred on the same origin), or a function ``density(r)`` of the
        radius from the origin, a float array in the potential's length unit,
        returning numbers proportional to the tracer density (the
        normalisation is irrelevant). Default: the potential's own density,
        a self-consistent model.
    r_range : tuple of :class:`~astropy.units.Quantity` [length] or float, optional
        Radii ``(r_min, r_max)`` of the grid (floats in the potential's length
        unit). Default :math:`(10^{-4}, 10^4)\, r_{1/2}`, where
        :math:`r_{1/2}` is the radius at which :math:`\Phi` is half its central
        value; pass it for a potential with an infinite centre or one that
        does not vanish at infinity.
    n_grid : int
        Radius grid points. The error of :math:`f` falls as about
        :math:`n_{\rm grid}^{-1.5}`: at 4096, f of the Plummer and Hernquist
        spheres is within 4e-4 and 1.1e-4 of the analytic one for
        :math:`-0.999 \le E \le -0.01` (G = M = scale radius = 1), and the
        table takes 0.3 s.

    Attributes
    ----------
    units : :class:`~gala.units.UnitSystem`
        The potential's unit system, that of every array.
    r_grid : :class:`numpy.ndarray`
        The radius grid.
    energy_table, f_table : :class:`numpy.ndarray`
        Energies :math:`E = \Phi(r)` at the grid's inner radii and
        :math:`f(E)` there (the innermost and outermost nodes are left out).

    Raises
    ------
    ValueError
        For a potential or tracer that is not spherical about the
        potential's origin, a force that is not attractive, a tracer density
        that is not positive and finite over ``r_range``, or an inconsistent
        pair: one for which :math:`f < 0` somewhere, so that no isotropic
        stationary DF exists.

    Examples
    --------
    >>> from gala.potential import HernquistPotential
    >>> edd = EddingtonDF(HernquistPotential(m=1.0, c=1.0, units=None))
    >>> q = np.sqrt(0.5)  # Hernquist (1990) eq. 17 at E = -0.5
    >>> exact = (3 * np.arcsin(q) + q * np.sqrt(1 - q**2) * (1 - 2 * q**2)
    ...          * (8 * q**4 - 8 * q**2 - 3)) / (1 - q**2) ** 2.5
    >>> exact /= np.sqrt(2) * (2 * np.pi) ** 3
    >>> bool(abs(edd.f(np.array([-0.5]))[0] / exact - 1) < 1e-3)
    True
    """

    _kind = "isotropic"
    _negative_f_fix = (
        "Use a consistent tracer-potential pair, e.g. a cuspier tracer, or the "
        "potential's own density"
    )

    def _invert(self, r, nu, psi, dpsi_dlnr) -> np.ndarray:
        """Eddington's f at the grid's inner binding energies."""
        return abel_inverse(r, nu, psi, dpsi_dlnr, 1.5) / (2**1.5 * np.pi**1.5)

    def f(self, energy: np.ndarray) -> np.ndarray:
        r"""The DF :math:`f(E)` at specific energies ``energy``, zero for unbound ones.

        Normalised so that f integrates to one over phase space within
        :math:`r_{\max}`, in the potential's units.
        """
        return self._f_binding(self._phi_max - np.asarray(energy, dtype=float))

    def energy(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r"""Specific energy :math:`E = v^2/2 + \Phi(x)` of (N, 3) arrays, shape (N,)."""
        phi = self._evaluate(self.potential.energy, np.asarray(x, dtype=float).T)
        return 0.5 * _r2(v) + phi

    def log_f(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r""":math:`\ln f(x, v)` for (N, 3) arrays; :math:`-\infty` where unbound."""
        with np.errstate(divide="ignore"):
            return np.log(self.f(self.energy(x, v)))

    def grad_log_f(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients :math:`(\nabla_x \ln f, \nabla_v \ln f)`, each ``(N, 3)``.

        For an isotropic DF, with the binding energy :math:`\mathcal{E}`,

        .. math::

            \nabla_x \ln f = -\frac{d\ln f}{d\ln\mathcal{E}}
                \frac{\nabla\Phi}{\mathcal{E}}, \qquad
            \nabla_v \ln f = -\frac{d\ln f}{d\ln\mathcal{E}}
                \frac{\vec{v}}{\mathcal{E}}.

        :math:`d\ln f/d\ln\mathcal{E}` is the second-order finite difference
        of the tabulated :math:`\ln f` against :math:`\ln\mathcal{E}`,
        interpolated linearly between the nodes and held at its end values
        outside the table; :math:`\nabla\Phi` is the potential's exact
        gradient. At the default grid, for :math:`-0.999 \le E \le -0.01`
        (G = M = scale radius = 1), this is within 1.5e-4 (Plummer) and
        1.2e-5 (Hernquist) of the analytic gradients; closer to
        :math:`\Phi(r_{\max})` they are those of the truncated tracer, whose
        f falls to zero there.

        Parameters
        ----------
        x : :class:`numpy.ndarray` [length]
            Positions, shape ``(N, 3)``, in the potential's unit system.
        v : :class:`numpy.ndarray` [speed]
            Velocities, shape ``(N, 3)``.

        Returns
        -------
        grad_x : :class:`numpy.ndarray` [1 / length]
            :math:`\nabla_x \ln f`, shape ``(N, 3)``.
        grad_v : :class:`numpy.ndarray` [time / length]
            :math:`\nabla_v \ln f`, shape ``(N, 3)``.

        Raises
        ------
        ValueError
            If any point is unbound (:math:`E \geq \Phi(r_{\max})`), where f
            vanishes.

        Examples
        --------
        >>> from gala.potential import PlummerPotential
        >>> from gala_deeppotential.mocks import PlummerTruth
        >>> edd = EddingtonDF(PlummerPotential(m=1.0, b=1.0, units=None))
        >>> x, v = np.array([[0.5, 0.0, 0.0]]), np.array([[0.0, 0.3, 0.0]])
        >>> grad_x, grad_v = edd.grad_log_f(x, v)
        >>> exact_x, exact_v = PlummerTruth().grad_log_f(x, v)
        >>> bool(np.allclose(grad_x, exact_x, rtol=1e-3))
        True
        """
        x = np.asarray(x, dtype=float)
        v = np.asarray(v, dtype=float)
        eps = self._phi_max - self.energy(x, v)
        if np.any(eps <= 0):
            raise ValueError(
                f"{np.count_nonzero(eps <= 0)} points are unbound (E >= Φ(r_max)), "
                "where f = 0 and ln f has no gradient; evaluate at bound points only"
            )
        slope = np.interp(np.log(eps), self._log_eps, self._dlogf_dlogeps)
        scale = -(slope / eps)[:, None]
        grad_phi = self._evaluate(self.potential.gradient, x.T).T
        return scale * grad_phi, scale * v

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` stars: positions and velocities, each (n, 3).

        See :func:`eddington_sample`.
        """
        n = _sample_size(n)
        rng = np.random.default_rng(seed)
        # 1 - uniform lies in (0, 1], so every draw has a finite radius.
        r = self._radius_at_mass(1.0 - rng.random(n))
        psi = self._phi_max - self._on_axis(self.potential.energy, r)
        speed = self._speed_fraction(psi, 1.0 - rng.random(n)) * np.sqrt(2 * psi)
        x = self._origin + r[:, None] * random_directions(n, rng)
        return x, speed[:, None] * random_directions(n, rng)


def abel_inverse(
    r: np.ndarray, g: np.ndarray, psi: np.ndarray, dpsi_dlnr: np.ndarray, order: float
) -> np.ndarray:
    r"""The Riemann–Liouville derivative :math:`D^p g` of order ``order`` in Ψ.

    Inverts :math:`g(\Psi) = \frac{1}{\Gamma(p)} \int_0^\Psi F(Q)
    (\Psi - Q)^{p - 1} dQ` for :math:`F`, at the grid's inner nodes. With
    :math:`m = \lceil p \rceil` and :math:`\mu = m - p`,

    .. math::

        D^p g(\mathcal{E}) = \frac{1}{\Gamma(\mu)} \left[
            \int_0^{\mathcal{E}} \frac{dh/d\Psi}{(\mathcal{E} - \Psi)^{1 - \mu}}
            d\Psi + \frac{h(0)}{\mathcal{E}^{1 - \mu}} \right],
        \qquad h = \frac{d^{m-1} g}{d\Psi^{m-1}},

    dropping the terms in :math:`g(0), \dots` below order :math:`m - 1`,
    which vanish for a tracer that vanishes at :math:`r_{\max}`. The
    derivatives are finite differences in :math:`\ln r` (the first one of
    :math:`\ln g`, accurate for power laws); taking :math:`h` linear in Ψ on
    each grid interval, each interval's integral is exact, so the
    singularity at :math:`\Psi = \mathcal{E}` never meets a node. For
    integer ``order`` (:math:`\mu = 0`) :math:`D^p g = dh/d\Psi`.

    Parameters
    ----------
    r, g, psi, dpsi_dlnr : :class:`numpy.ndarray`
        The radius grid, :math:`g` there, the relative potential Ψ
        (decreasing along the grid to zero at its last node) and
        :math:`d\Psi/d\ln r` (negative).
    order : float
        :math:`p > 0`.

    Returns
    -------
    :class:`numpy.ndarray`
        :math:`D^p g` at ``psi[1:-1]``.
    """
    s = np.log(r)
    m = int(np.ceil(order - 1e-12))
    mu = m - order
    h = g
    for k in range(m - 1):
        dh_ds = (
            g * np.gradient(np.log(g), s, edge_order=2)
            if k == 0
            else (np.gradient(h, s, edge_order=2))
        )
        h = dh_ds / dpsi_dlnr
    if mu < 1e-12:
        return (np.gradient(h, s, edge_order=2) / dpsi_dlnr)[1:-1]
    eps = psi[1:-1]
    slope = (h[:-1] - h[1:]) / (psi[:-1] - psi[1:])
    integral = np.empty(eps.size)
    for rows in np.array_split(
        np.arange(eps.size), max(1, eps.size * psi.size // _CHUNK)
    ):
        # (E - Ψ)^μ at the nodes, zero inside the radius of E: intervals there
        # drop out.
        t = np.clip(eps[rows, None] - psi, 0.0, None) ** mu
        integral[rows] = np.sum(slope * (t[:, 1:] - t[:, :-1]), axis=1) / mu
    return (integral + h[-1] * eps ** (mu - 1)) / gamma(mu)


def eddington_sample(
    potential: PotentialBase,
    density: TracerDensity | None,
    n: int,
    *,
    seed: int | np.random.Generator | None = None,
    r_range: tuple[u.Quantity | float, u.Quantity | float] | None = None,
    n_grid: int = 4096,
) -> PhaseSpacePosition:
    r"""Draw an isotropic, stationary sample of a tracer in a spherical potential.

    The DF comes from Eddington's inversion (see :class:`EddingtonDF`). Radii
    are drawn from the inverse of the tracer's cumulative mass (a power law
    inside ``r_min``), speeds from :math:`v^2 f(\Phi(r) + v^2/2)` at each
    star's radius by a vectorised inverse CDF, and directions isotropically.
    The sample is truncated at ``r_max``.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        The spherical potential the stars orbit in.
    density : :class:`~gala.potential.PotentialBase`, callable or None
        The tracer: a gala potential whose mass density it is, a function
        ``density(r)`` of radius (a float array in the potential's length
        unit; any normalisation), or None for the potential's own density.
    n : int
        Number of stars.
    seed : int or :class:`numpy.random.Generator`, optional
        Seed for reproducibility.
    r_range : tuple of :class:`~astropy.units.Quantity` [length], optional
        ``(r_min, r_max)`` of the tabulation; see :class:`EddingtonDF`.
    n_grid : int
        Radius grid points.

    Returns
    -------
    w : :class:`~gala.dynamics.PhaseSpacePosition`
        Positions and velocities in the potential's unit system.

    Raises
    ------
    ValueError
        For ``n`` that is not a positive integer, and for the problems listed
        in :class:`EddingtonDF` (non-spherical input, negative f).

    Examples
    --------
    >>> import astropy.units as u
    >>> from gala.potential import HernquistPotential
    >>> from gala.units import galactic
    >>> halo = HernquistPotential(m=1e12 * u.Msun, c=20 * u.kpc, units=galactic)
    >>> w = eddington_sample(halo, None, 1000, seed=1)
    >>> w.xyz.unit, w.shape
    (Unit("kpc"), (1000,))
    """
    n = _sample_size(n)
    edd = EddingtonDF(potential, density, r_range=r_range, n_grid=n_grid)
    return edd.to_phase_space_position(*edd.sample(n, seed=seed))
