r"""Axisymmetric galaxies and the common machinery of DFs :math:`f(E, L_z)`.

By Jeans' theorem any function of the energy :math:`E` and the angular momentum
about the symmetry axis :math:`L_z` is a stationary DF in an axisymmetric
potential, so these truths need no N-body run and no phase mixing. The
symmetry axis is the potential's z axis through its origin.
"""

from __future__ import annotations

__all__ = ["AxisymmetricDF", "disc_galaxy_potential", "milky_way_potential"]

import astropy.units as u
import numpy as np
from gala.potential import (
    CCompositePotential,
    HernquistPotential,
    MilkyWayPotential,
    MiyamotoNagaiPotential,
    NFWPotential,
    PotentialBase,
)
from gala.units import DimensionlessUnitSystem, UnitSystem, galactic

from ..phasespace import strip_units
from ._common import _phase_space_position, _positive, _sample_size

# Azimuths and heights at which axisymmetry and a potential that is deepest in
# the plane are checked, in units of the truncation radius.
_CHECK_RADII = np.array([0.01, 0.1, 0.3, 0.7])
_CHECK_AZIMUTHS = np.linspace(0.0, 2 * np.pi, 7, endpoint=False)
_AXISYMMETRIC_RTOL = 1e-6
# Nodes of the circular-orbit table, from this fraction of the truncation
# radius out to it; bisection steps that refine a guiding radius from its
# table interval (each halves an interval of relative width < 1e-2).
_N_CIRCULAR = 2048
_R_MIN_FRACTION = 1e-6
_BISECTIONS = 44


def disc_galaxy_potential(units: UnitSystem = galactic) -> CCompositePotential:
    r"""A Milky-Way-like disc galaxy: Miyamoto–Nagai disc, Hernquist bulge, NFW halo.

    The disc (:math:`6.8\times10^{10}\,M_\odot`, a = 3 kpc, b = 0.28 kpc), bulge
    (:math:`5\times10^{9}\,M_\odot`, c = 1 kpc) and halo
    (:math:`5.4\times10^{11}\,M_\odot`, :math:`r_s` = 15.62 kpc) are those of
    Bovy (2015)'s MWPotential2014 as adopted by gala's ``MilkyWayPotential``
    (without its nucleus). The circular speed is 230 km/s at 8 kpc.

    Parameters
    ----------
    units : :class:`~gala.units.UnitSystem`
        The potential's unit system.

    Returns
    -------
    potential : :class:`~gala.potential.CCompositePotential`
        Components ``"disc"``, ``"bulge"`` and ``"halo"``.

    Examples
    --------
    >>> pot = disc_galaxy_potential()
    >>> vc = pot.circular_velocity([8.0, 0, 0] * u.kpc)
    >>> round(float(vc.to_value(u.km / u.s)[0]))
    230
    """
    pot = CCompositePotential()
    pot["disc"] = MiyamotoNagaiPotential(
        m=6.8e10 * u.Msun, a=3.0 * u.kpc, b=0.28 * u.kpc, units=units
    )
    pot["bulge"] = HernquistPotential(m=5e9 * u.Msun, c=1.0 * u.kpc, units=units)
    pot["halo"] = NFWPotential(m=5.4e11 * u.Msun, r_s=15.62 * u.kpc, units=units)
    return pot


def milky_way_potential() -> PotentialBase:
    """gala's ``MilkyWayPotential2022``: discs, bulge, nucleus and NFW halo.

    Returns
    -------
    potential : :class:`~gala.potential.PotentialBase`
        ``MilkyWayPotential(version="v2")``, the model gala also calls
        ``MilkyWayPotential2022``, in the galactic unit system.
    """
    return MilkyWayPotential(version="v2")


class AxisymmetricDF:
    r"""Base of exact DFs :math:`f(E, L_z)` of tracers in axisymmetric potentials.

    A subclass defines :math:`\ln f(E, L_z)` and its two partial derivatives;
    this class supplies the potential's calculus (circular orbits, guiding
    radii), the chain rule to phase space and the unit handling. f vanishes
    for :math:`E \geq E_t = \Phi(R_t, z=0)`, the energy of a star at rest at
    the truncation radius :math:`R_t`, so every star stays within
    :math:`R_t`.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        An axisymmetric gala potential, symmetric about the z axis through its
        origin and, at every radius, deepest in the plane z = 0.
    truncation_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_t`.

    Raises
    ------
    ValueError
        For a potential that is not axisymmetric, not deepest in its plane,
        or whose circular angular momentum does not grow with radius.

    Notes
    -----
    A subclass writes f in terms of the prograde angular momentum
    :math:`s L_z`, where :attr:`sense` :math:`s = +1` for a system that
    turns counterclockwise seen from +z and :math:`-1` for one that turns
    clockwise, as the Milky Way does in astropy's Galactocentric frame.
    """

    #: +1: the system turns counterclockwise seen from +z; -1: clockwise.
    sense: int = 1

    def __init__(self, potential: PotentialBase, truncation_radius: u.Quantity) -> None:
        if not isinstance(potential, PotentialBase):
            raise TypeError(
                f"potential must be a gala potential, got {type(potential).__name__}"
            )
        self.potential = potential
        self.units: UnitSystem = potential.units
        # A composite has no origin of its own: its components carry theirs.
        self._origin = np.asarray(
            getattr(potential, "origin", np.zeros(3)), dtype=float
        )
        self.truncation_radius = self._length(truncation_radius, "truncation_radius")
        self._check_geometry()
        self.energy_max = float(self._phi_plane(np.array([self.truncation_radius]))[0])
        self._tabulate_circular_orbits()

    # ------------------------------------------------------------ units

    def _length(self, value, name: str) -> float:
        """A positive length in the potential's unit, from a Quantity."""
        return self._quantity(value, name, "length")

    def _speed(self, value, name: str) -> float:
        """A positive speed in the potential's units, from a Quantity."""
        return self._quantity(value, name, "speed")

    def _quantity(self, value, name: str, physical_type: str) -> float:
        if isinstance(self.units, DimensionlessUnitSystem):
            raise ValueError(
                f"{name} needs units but the potential is dimensionless; "
                "give the potential a unit system such as gala.units.galactic"
            )
        return _positive(value, name, physical_type, self.units)

    # ------------------------------------------------------------ potential

    def _phi(self, x: np.ndarray) -> np.ndarray:
        """Φ at (N, 3) positions relative to the origin, shape (N,)."""
        return self._call(self.potential.energy, x)

    def _grad(self, x: np.ndarray) -> np.ndarray:
        """∇Φ at (N, 3) positions relative to the origin, shape (N, 3)."""
        return self._call(self.potential.gradient, x).T

    def _call(self, method, x: np.ndarray) -> np.ndarray:
        q = (np.asarray(x, dtype=float) + self._origin).T
        if not isinstance(self.units, DimensionlessUnitSystem):
            q = q * self.units["length"]
        return strip_units(method(q))

    def _phi_plane(self, R: np.ndarray) -> np.ndarray:
        return self._phi(_cartesian(R, np.zeros_like(R)))

    def _phi_Rz(self, R: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self._phi(_cartesian(R, z))

    def _dphi_dR_plane(self, R: np.ndarray) -> np.ndarray:
        return self._grad(_cartesian(R, np.zeros_like(R)))[:, 0]

    def _check_geometry(self) -> None:
        r = _CHECK_RADII * self.truncation_radius
        sin_theta = np.array([1.0, 0.8, 0.5, 0.0])
        for radius in r:
            R = radius * sin_theta
            z = radius * np.sqrt(1 - sin_theta**2)
            phi = self._phi_Rz(R, z)
            rings = [
                self._phi(np.column_stack([R * np.cos(a), R * np.sin(a), z]))
                for a in _CHECK_AZIMUTHS
            ]
            spread = np.max(np.abs(np.array(rings) - phi)) / np.max(np.abs(phi))
            if spread > _AXISYMMETRIC_RTOL:
                raise ValueError(
                    f"the potential is not axisymmetric about its z axis (Φ varies "
                    f"by {spread:.1e} of itself around a ring at r = {radius:.3g}); "
                    "f(E, L_z) is stationary only in an axisymmetric potential"
                )
            if np.any(np.diff(phi) < -_AXISYMMETRIC_RTOL * np.abs(phi[:-1])):
                raise ValueError(
                    "the potential is not deepest in the plane z = 0 at "
                    f"r = {radius:.3g}; "
                    "the samplers need Φ(r, θ) to be smallest at θ = 90°"
                )

    # ------------------------------------------------------------ circular orbits

    def _tabulate_circular_orbits(self) -> None:
        R = np.geomspace(
            _R_MIN_FRACTION * self.truncation_radius,
            self.truncation_radius,
            _N_CIRCULAR,
        )
        lz2 = R**3 * self._dphi_dR_plane(R)
        if np.any(lz2 <= 0) or np.any(np.diff(lz2) <= 0):
            raise ValueError(
                "the circular angular momentum R^3 dΦ/dR must be positive and grow "
                f"with radius in the plane out to R_t = {self.truncation_radius:.3g}; "
                "the potential has no stable circular orbits there"
            )
        self._R_table = R
        self._lz2_table = lz2
        self.lz_max = float(np.sqrt(lz2[-1]))

    def guiding_radius(self, lz: np.ndarray) -> np.ndarray:
        r"""Radius :math:`R_g` of the plane's circular orbit with :math:`|L_z|`.

        Solves :math:`L_z^2 = R^3\,\partial\Phi/\partial R` by bisection in
        the interval of the circular-orbit table that holds the root, to
        about 1e-15 of R; below the table's first node it bisects from zero.

        Parameters
        ----------
        lz : :class:`numpy.ndarray` [length speed]
            Angular momenta, any sign; :math:`|L_z|` must not exceed
            :attr:`lz_max`, the circular one at the truncation radius.
        """
        lz2 = np.asarray(lz, dtype=float) ** 2
        if np.any(lz2 > self._lz2_table[-1] * (1 + 1e-12)):
            raise ValueError(
                f"|L_z| exceeds the circular angular momentum {self.lz_max:.4g} at "
                "the truncation radius; no circular orbit inside R_t has it"
            )
        k = np.searchsorted(self._lz2_table, lz2)
        lo = np.where(k > 0, self._R_table[np.maximum(k - 1, 0)], 0.0)
        hi = self._R_table[np.minimum(k, _N_CIRCULAR - 1)]
        return bisect_increasing(
            lambda R: R**3 * self._dphi_dR_plane(R),
            lz2,
            lo,
            hi,
            _BISECTIONS + 40 * bool(np.any(k == 0)),
        )

    def circular_orbit(
        self, lz: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Guiding radius, energy and angular frequency of circular orbits.

        Parameters
        ----------
        lz : :class:`numpy.ndarray` [length speed]
            Angular momenta; the orbit of :math:`|L_z|` is returned.

        Returns
        -------
        R_g : :class:`numpy.ndarray` [length]
        E_c : :class:`numpy.ndarray` [specific energy]
            :math:`\Phi(R_g, 0) + L_z^2 / 2R_g^2`, the least energy a star
            with this :math:`L_z` can have.
        Omega : :class:`numpy.ndarray` [frequency]
            :math:`|L_z| / R_g^2 = dE_c/d|L_z|`.
        """
        lz = np.abs(np.asarray(lz, dtype=float))
        R_g = self.guiding_radius(lz)
        with np.errstate(divide="ignore", invalid="ignore"):
            omega = np.where(R_g > 0, lz / R_g**2, 0.0)
            E_c = self._phi_plane(R_g) + 0.5 * np.where(R_g > 0, lz * omega, 0.0)
        return R_g, E_c, omega

    def circular_lz(self, R: np.ndarray) -> np.ndarray:
        """Angular momentum of the circular orbit at plane radius ``R``."""
        R = np.asarray(R, dtype=float)
        return np.sqrt(R**3 * self._dphi_dR_plane(R))

    # ------------------------------------------------------------ phase space

    def energy(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r"""Specific energy :math:`E = v^2/2 + \Phi(x)` of (N, 3) arrays, shape (N,)."""
        x, v = _as_points(x, v)
        return 0.5 * np.sum(v**2, axis=1) + self._phi(x - self._origin)

    def lz(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Angular momentum about the z axis through the origin, shape (N,)."""
        x, v = _as_points(x, v)
        x = x - self._origin
        return x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]

    def log_f(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r""":math:`\ln f(x, v)` for (N, 3) arrays, up to a constant.

        :math:`-\infty` where :math:`E \geq E_t`.
        """
        E, lz = self.energy(x, v), self.sense * self.lz(x, v)
        out = np.full(E.shape, -np.inf)
        bound = E < self.energy_max
        out[bound] = self._log_f(E[bound], lz[bound])
        return out

    def grad_log_f(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients :math:`(\nabla_x \ln f, \nabla_v \ln f)`, each ``(N, 3)``.

        By the chain rule, with :math:`\nabla_x E = \nabla\Phi`,
        :math:`\nabla_v E = v`, :math:`\nabla_x L_z = (v_y, -v_x, 0)` and
        :math:`\nabla_v L_z = (-y, x, 0)`:

        .. math::

            \nabla \ln f = \frac{\partial \ln f}{\partial E} \nabla E
                + \frac{\partial \ln f}{\partial L_z} \nabla L_z,

        with the subclass's exact partial derivatives and the potential's
        exact gradient.

        Parameters
        ----------
        x : :class:`numpy.ndarray` [length]
            Positions, shape ``(N, 3)``, in the potential's unit system.
        v : :class:`numpy.ndarray` [speed]
            Velocities, shape ``(N, 3)``.

        Raises
        ------
        ValueError
            If any point has :math:`E \geq E_t`, where f vanishes.
        """
        x, v = _as_points(x, v)
        E, lz = self.energy(x, v), self.sense * self.lz(x, v)
        if np.any(E >= self.energy_max):
            raise ValueError(
                f"{np.count_nonzero(E >= self.energy_max)} points have E >= E_t, "
                "where f = 0 and ln f has no gradient; evaluate at bound points only"
            )
        d_E, d_lz = self._dlog_f(E, lz)
        d_lz = self.sense * d_lz
        rel = x - self._origin
        grad_lz_x = np.column_stack([v[:, 1], -v[:, 0], np.zeros(len(v))])
        grad_lz_v = np.column_stack([-rel[:, 1], rel[:, 0], np.zeros(len(v))])
        grad_x = d_E[:, None] * self._grad(rel) + d_lz[:, None] * grad_lz_x
        grad_v = d_E[:, None] * v + d_lz[:, None] * grad_lz_v
        return grad_x, grad_v

    def sample_sphere(
        self,
        n: int,
        center: u.Quantity,
        radius: u.Quantity,
        seed: int | np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Draw ``n`` stars exactly from the DF restricted to a sphere.

        A survey's local volume, e.g. the stars within 1.5 kpc of the Sun.
        Stars are drawn from the whole DF and each is then turned about the
        symmetry axis: the azimuth of an axisymmetric DF is uniform and
        independent of the rest, so a star at :math:`(R, z)` whose ring
        crosses the sphere over an arc of half-width :math:`\Delta(R, z)`
        is kept with probability :math:`\Delta/\Delta_{max}` and placed
        uniformly on that arc. That is rejection from the restricted DF,
        exact, and about :math:`\pi/\Delta_{max}` times more efficient than
        keeping the stars that happen to fall in the sphere.

        Parameters
        ----------
        n : int
            Number of stars.
        center : :class:`~astropy.units.Quantity` [length], shape (3,)
            Centre of the sphere, in the DF's Cartesian frame.
        radius : :class:`~astropy.units.Quantity` [length]
            Its radius.
        seed : int or :class:`numpy.random.Generator`, optional

        Returns
        -------
        x, v : :class:`numpy.ndarray`, shape (n, 3)
            Positions and velocities in the potential's unit system.
        """
        n = _sample_size(n)
        a = self._length(radius, "radius")
        c = np.asarray(u.Quantity(center).decompose(self.units).value, dtype=float)
        if c.shape != (3,):
            raise ValueError(f"center must hold three coordinates, got {c.shape}")
        c = c - self._origin
        R_c, phi_c = float(np.hypot(c[0], c[1])), float(np.arctan2(c[1], c[0]))
        widest = np.arcsin(a / R_c) if R_c > a else np.pi
        rng = np.random.default_rng(seed)
        parts, have, size = [], 0, 2**15
        while have < n:
            x, v = self._sample_near(size, rng, max(R_c - a, 0.0), R_c + a)
            x = x - self._origin
            R = np.hypot(x[:, 0], x[:, 1])
            cos_arc = (R**2 + R_c**2 + (x[:, 2] - c[2]) ** 2 - a**2) / np.maximum(
                2 * R * R_c, 1e-300
            )
            half = np.arccos(np.clip(cos_arc, -1, 1))
            half = np.where(cos_arc > 1, 0.0, half)
            keep = rng.random(size) * widest < half
            # Draw what the acceptance so far says is missing, and a bit more.
            acceptance = max(keep.mean(), 1e-4)
            turn = (
                phi_c
                + half[keep] * (2 * rng.random(keep.sum()) - 1)
                - np.arctan2(x[keep, 1], x[keep, 0])
            )
            parts.append((_turn(x[keep], turn), _turn(v[keep], turn)))
            have += int(keep.sum())
            size = int(min(2**22, max(2**15, 1.2 * (n - have) / acceptance)))
        x, v = (np.concatenate(p)[:n] for p in zip(*parts, strict=True))
        return x + self._origin, v

    def to_phase_space_position(self, x: np.ndarray, v: np.ndarray):
        """Wrap (N, 3) arrays as a :class:`~gala.dynamics.PhaseSpacePosition`."""
        return _phase_space_position(x, v, self.units)

    def _to_cartesian(
        self,
        R: np.ndarray,
        azimuth: np.ndarray,
        z: np.ndarray,
        v_R: np.ndarray,
        v_phi: np.ndarray,
        v_z: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cylindrical coordinates about the symmetry axis to (N, 3) arrays;
        ``v_phi`` is prograde (along :attr:`sense`)."""
        v_phi = self.sense * v_phi
        c, s = np.cos(azimuth), np.sin(azimuth)
        x = np.column_stack([R * c, R * s, z]) + self._origin
        v = np.column_stack([v_R * c - v_phi * s, v_R * s + v_phi * c, v_z])
        return x, v

    # ------------------------------------------------------------ subclass API

    def _sample_near(
        self, n: int, rng: np.random.Generator, R_min: float, R_max: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` stars, of which those at cylindrical radii in [R_min, R_max]
        follow the DF exactly; a subclass may skip stars that cannot get there."""
        return self.sample(n, seed=rng)

    def _log_f(self, E: np.ndarray, lz: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _dlog_f(self, E: np.ndarray, lz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def bisect_increasing(func, target, lo, hi, steps: int) -> np.ndarray:
    """Where the increasing ``func`` reaches ``target`` in [lo, hi], element-wise.

    ``steps`` vectorised bisections; returns the final intervals' midpoints.
    """
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = func(mid) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _cartesian(R: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(N, 3) points at cylindrical radius R and height z on the x axis' meridian."""
    R = np.asarray(R, dtype=float)
    return np.column_stack([R, np.zeros_like(R), np.broadcast_to(z, R.shape)])


def _as_points(x, v) -> tuple[np.ndarray, np.ndarray]:
    x = np.atleast_2d(np.asarray(x, dtype=float))
    v = np.atleast_2d(np.asarray(v, dtype=float))
    if x.shape != v.shape or x.shape[-1] != 3:
        raise ValueError(
            f"x and v must both have shape (N, 3); got {x.shape} and {v.shape}"
        )
    return x, v


def _turn(q: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (N, 3) vectors about the z axis by ``angle`` (N,) [rad]."""
    c, s = np.cos(angle), np.sin(angle)
    return np.column_stack(
        [c * q[:, 0] - s * q[:, 1], s * q[:, 0] + c * q[:, 1], q[:, 2]]
    )
