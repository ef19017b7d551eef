r"""A rotating bar: stars stationary in a frame that turns at a pattern speed.

In a potential that rotates rigidly at :math:`\Omega_p` about the z axis, the
Jacobi integral

.. math::

    E_J = \tfrac12 |\vec v|^2 + \Phi(\vec x) - \Omega_p L_z
        = \tfrac12 |\vec v - \vec\Omega_p \times \vec x|^2 + \Phi_{\rm eff}(\vec x),
    \qquad \Phi_{\rm eff} = \Phi - \tfrac12 \Omega_p^2 R^2,

is conserved (coordinates and velocities inertial, :math:`\Phi` that of the
rotating frame at the instant the frames coincide), so by Jeans' theorem any
:math:`f(E_J)` is stationary in the rotating frame. Truncated below the
Jacobi energy of the Lagrange points L1 and L2, every star with
:math:`f > 0` is trapped inside corotation, and the population is exactly
stationary with no N-body run.
"""

from __future__ import annotations

__all__ = ["BarDF", "barred_galaxy_potential"]

import astropy.units as u
import numpy as np
from gala.potential import (
    CCompositePotential,
    ConstantRotatingFrame,
    LongMuraliBarPotential,
    MiyamotoNagaiPotential,
    NFWPotential,
    PotentialBase,
)
from gala.units import DimensionlessUnitSystem, UnitSystem, galactic

from ..phasespace import strip_units
from ._common import (
    _phase_space_position,
    _polytrope_velocities,
    _positive,
    _sample_size,
)
from .axisymmetric import _as_points

# Grids on which the Lagrange points' Jacobi energy is found: radii out to
# this multiple of the circular-orbit corotation estimate, and azimuths.
_N_RADII = 1200
_RADIUS_FACTOR = 3.0
_N_AZIMUTHS = 360
# Heights tried, in units of the Lagrange radius, for the sampling box's
# half-height, and the grid on which the box's top is checked to lie
# outside the trapped region.
_HEIGHTS = np.geomspace(0.05, 20.0, 64)
_N_CHECK = 96
# Proposals per round of the position sampler.
_BATCH = 1 << 18


def barred_galaxy_potential(units: UnitSystem = galactic) -> CCompositePotential:
    r"""A barred disc galaxy: a Long–Murali bar, a Miyamoto–Nagai disc, an NFW halo.

    The bar (:math:`2\times10^{10}\,M_\odot`, half-length a = 3.5 kpc,
    b = 1 kpc, c = 0.5 kpc, along the x axis), disc
    (:math:`5\times10^{10}\,M_\odot`, a = 3 kpc, b = 0.28 kpc) and halo
    (:math:`5.4\times10^{11}\,M_\odot`, :math:`r_s` = 15.62 kpc) give an
    azimuthally averaged circular speed of about 238 km/s at 6 kpc, so a
    pattern speed of 40 km/s/kpc puts corotation near 6 kpc (the Lagrange
    points L1 and L2 at 6.1 kpc), outside the bar's end, as in observed
    bars.

    Parameters
    ----------
    units : :class:`~gala.units.UnitSystem`
        The potential's unit system.

    Returns
    -------
    potential : :class:`~gala.potential.CCompositePotential`
        Components ``"bar"``, ``"disc"`` and ``"halo"``.
    """
    pot = CCompositePotential()
    pot["bar"] = LongMuraliBarPotential(
        m=2e10 * u.Msun, a=3.5 * u.kpc, b=1.0 * u.kpc, c=0.5 * u.kpc, units=units
    )
    pot["disc"] = MiyamotoNagaiPotential(
        m=5e10 * u.Msun, a=3.0 * u.kpc, b=0.28 * u.kpc, units=units
    )
    pot["halo"] = NFWPotential(m=5.4e11 * u.Msun, r_s=15.62 * u.kpc, units=units)
    return pot


class BarDF:
    r"""An exact DF stationary in a rotating barred potential: :math:`f(E_J)`.

    .. math::

        f = (E_c - E_J)^{n} \quad (E_J < E_c), \qquad
        E_c = \Phi_{\rm eff}(0) + q\,[E_L - \Phi_{\rm eff}(0)],

    inside corotation, where :math:`E_L` is the Jacobi energy of the
    Lagrange points L1 and L2 (the saddles of :math:`\Phi_{\rm eff}` on the
    bar's major axis) and :math:`q \le 1`, so the zero-velocity surface
    closes inside them and every star stays there. In the rotating frame the
    velocities are isotropic at each point, with speed distribution
    :math:`\propto w^2 (\Psi - w^2/2)^n`, :math:`\Psi = E_c -
    \Phi_{\rm eff}`, and the density is
    :math:`\propto \Psi^{n + 3/2}`: it follows the effective potential's
    contours, elongated along the bar. In the inertial frame the stars
    turn with the pattern, :math:`\bar{\vec v} = \vec\Omega_p \times \vec x`.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        The potential in the frame rotating with it, deepest in the plane
        z = 0 at every (x, y), such as :func:`barred_galaxy_potential`.
    pattern_speed : :class:`~astropy.units.Quantity` [frequency]
        :math:`\Omega_p` about the z axis; positive is counterclockwise seen
        from +z.
    index : float
        n (> 1/2, so f falls smoothly to 0 at :math:`E_c`).
    jacobi_fraction : float
        q, in (0, 1): how close :math:`E_c` comes to :math:`E_L`.

    Examples
    --------
    >>> bar = BarDF(barred_galaxy_potential(), 40 * u.km / u.s / u.kpc)
    >>> x, v = bar.sample(2000, seed=1)
    >>> bool(np.all(bar.jacobi_energy(x, v) < bar.energy_max))
    True
    """

    def __init__(
        self,
        potential: PotentialBase,
        pattern_speed: u.Quantity,
        *,
        index: float = 2.0,
        jacobi_fraction: float = 0.95,
    ) -> None:
        if not isinstance(potential, PotentialBase):
            raise TypeError(
                f"potential must be a gala potential, got {type(potential).__name__}"
            )
        self.potential = potential
        self.units: UnitSystem = potential.units
        if isinstance(self.units, DimensionlessUnitSystem):
            raise ValueError(
                "BarDF needs a potential with units, such as gala.units.galactic"
            )
        if not np.isfinite(index) or index <= 0.5:
            raise ValueError(f"index must be a number above 1/2, got {index!r}")
        if not 0 < jacobi_fraction < 1:
            raise ValueError(
                f"jacobi_fraction must be in (0, 1), got {jacobi_fraction!r}"
            )
        self.pattern_speed = _frequency(pattern_speed, self.units)
        self.index = float(index)
        self.lagrange_radius, self.lagrange_energy = self._lagrange_points()
        center = self._phi_eff(np.zeros((1, 3)))[0]
        self.energy_max = center + jacobi_fraction * (self.lagrange_energy - center)
        self._half_height = self._box_height()

    # ------------------------------------------------------------ potential

    def _phi(self, x: np.ndarray) -> np.ndarray:
        return strip_units(self.potential.energy(x.T * self.units["length"]))

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return strip_units(self.potential.gradient(x.T * self.units["length"])).T

    def _phi_eff(self, x: np.ndarray) -> np.ndarray:
        """The effective potential :math:`\\Phi - \\Omega_p^2 R^2 / 2`, shape (N,)."""
        R2 = x[:, 0] ** 2 + x[:, 1] ** 2
        return self._phi(x) - 0.5 * self.pattern_speed**2 * R2

    def _lagrange_points(self) -> tuple[float, float]:
        """The radius and Jacobi energy of the saddle that walls in corotation.

        :math:`E_L = \\max_R \\min_\\phi \\Phi_{\\rm eff}(R, \\phi, 0)`: on
        circles inside it the effective potential somewhere dips below any
        lower energy, and the lowest pass out of the centre's well is there.
        """
        omega = abs(self.pattern_speed)
        if omega == 0:
            raise ValueError("pattern_speed must not be 0: a bar needs to rotate")
        # A first guess at corotation from the azimuthally averaged pull.
        radii = np.geomspace(1e-2, 1e3, 2000)
        phis = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        x = _ring_points(radii, phis)
        pull = -np.sum(self._grad(x) * x, axis=1).reshape(radii.size, phis.size)
        vc2 = -pull.mean(axis=1)
        below = np.flatnonzero(vc2 / radii**2 < omega**2)
        if below.size == 0:
            raise ValueError("the pattern speed has no corotation radius here")
        r_max = _RADIUS_FACTOR * radii[below[0]]
        radii = np.linspace(r_max / _N_RADII, r_max, _N_RADII)
        phis = np.linspace(0, 2 * np.pi, _N_AZIMUTHS, endpoint=False)
        ring_min = (
            self._phi_eff(_ring_points(radii, phis))
            .reshape(radii.size, phis.size)
            .min(axis=1)
        )
        best = int(np.argmax(ring_min))
        if best == radii.size - 1:
            raise ValueError(
                "found no saddle of the effective potential inside "
                f"{r_max:.3g} {self.units['length']}: is the potential bound?"
            )
        return float(radii[best]), float(ring_min[best])

    def _box_height(self) -> float:
        """Half-height of a cylinder about z that holds the trapped region."""
        radii = np.linspace(0, self.lagrange_radius, _N_CHECK)
        phis = np.linspace(0, 2 * np.pi, _N_CHECK // 4, endpoint=False)
        ring = _ring_points(radii, phis)
        for height in _HEIGHTS * self.lagrange_radius:
            top = ring + np.array([0.0, 0.0, height])
            if np.all(self._phi_eff(top) > self.energy_max):
                return float(height)
        raise ValueError("the trapped region is not bounded in z")

    # ------------------------------------------------------------ the DF

    def jacobi_energy(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r"""The Jacobi energy :math:`E - \Omega_p L_z` of (N, 3) arrays, shape (N,)."""
        x, v = _as_points(x, v)
        lz = x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]
        return 0.5 * np.sum(v**2, axis=1) + self._phi(x) - self.pattern_speed * lz

    def log_f(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r""":math:`\ln f` up to a constant; :math:`-\infty` where
        :math:`E_J \ge E_c` or outside corotation."""
        x, v = _as_points(x, v)
        room = self.energy_max - self.jacobi_energy(x, v)
        out = np.full(room.shape, -np.inf)
        ok = (room > 0) & self._trapped(x)
        out[ok] = self.index * np.log(room[ok])
        return out

    def grad_log_f(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Gradients :math:`(\nabla_x \ln f, \nabla_v \ln f)`, each ``(N, 3)``.

        :math:`\nabla \ln f = -n\,\nabla E_J / (E_c - E_J)`, with
        :math:`\nabla_x E_J = \nabla\Phi - \Omega_p (v_y, -v_x, 0)` and
        :math:`\nabla_v E_J = \vec v - \Omega_p (-y, x, 0)`.

        Raises
        ------
        ValueError
            If any point has :math:`E_J \ge E_c`, where f vanishes.
        """
        x, v = _as_points(x, v)
        room = self.energy_max - self.jacobi_energy(x, v)
        if np.any(room <= 0):
            raise ValueError(
                f"{np.count_nonzero(room <= 0)} points have E_J >= E_c, where "
                "f = 0 and ln f has no gradient; evaluate at the DF's stars only"
            )
        omega, zero = self.pattern_speed, np.zeros(len(x))
        d_x = self._grad(x) - omega * np.column_stack([v[:, 1], -v[:, 0], zero])
        d_v = v - omega * np.column_stack([-x[:, 1], x[:, 0], zero])
        scale = (-self.index / room)[:, None]
        return scale * d_x, scale * d_v

    def _trapped(self, x: np.ndarray) -> np.ndarray:
        return np.hypot(x[:, 0], x[:, 1]) < self.lagrange_radius

    def relative_density(self, x: np.ndarray) -> np.ndarray:
        r"""The density over its value at the centre,
        :math:`[\Psi(x)/\Psi(0)]^{n + 3/2}` inside corotation, else 0."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        depth = self.energy_max - self._phi_eff(np.zeros((1, 3)))[0]
        room = np.clip(self.energy_max - self._phi_eff(x), 0.0, None)
        return np.where(self._trapped(x), (room / depth) ** (self.index + 1.5), 0.0)

    # ------------------------------------------------------------ sampling

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Draw ``n`` stars exactly: inertial positions and velocities, (n, 3) each.

        Positions are drawn by rejection from a cylinder that holds the
        trapped region, with the density's central value as the bound (the
        centre is the effective potential's minimum; a proposal above it
        raises). Given the position, :math:`s = w^2 / 2\Psi` is
        Beta(3/2, n + 1) and the direction of the rotating-frame velocity
        :math:`\vec w` isotropic; the inertial velocity is
        :math:`\vec w + \vec\Omega_p \times \vec x`.

        Parameters
        ----------
        n : int
            Number of stars.
        seed : int or :class:`numpy.random.Generator`, optional
            Seed for reproducibility.

        Returns
        -------
        x, v : :class:`numpy.ndarray`
            Positions [length] and velocities [speed], each ``(n, 3)``.
        """
        n = _sample_size(n)
        rng = np.random.default_rng(seed)
        x = self._sample_positions(n, rng)
        room = self.energy_max - self._phi_eff(x)
        w = _polytrope_velocities(room, self.index, rng)
        turn = self.pattern_speed * np.column_stack([-x[:, 1], x[:, 0], np.zeros(n)])
        return x, w + turn

    def _sample_positions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        r_max, h = self.lagrange_radius, self._half_height
        out, have = [], 0
        while have < n:
            R = r_max * np.sqrt(rng.random(_BATCH))
            phi = 2 * np.pi * rng.random(_BATCH)
            z = h * (2 * rng.random(_BATCH) - 1)
            x = np.column_stack([R * np.cos(phi), R * np.sin(phi), z])
            ratio = self.relative_density(x)
            if np.any(ratio > 1 + 1e-12):
                raise RuntimeError(
                    "the density exceeds its central value: the effective "
                    "potential's minimum is not at the centre"
                )
            keep = rng.random(_BATCH) < ratio
            out.append(x[keep])
            have += int(keep.sum())
        return np.concatenate(out)[:n]

    # ------------------------------------------------------------ gala

    def frame(self) -> ConstantRotatingFrame:
        """gala's frame rotating with the bar, for orbits in :attr:`potential`."""
        omega = self.pattern_speed / self.units["time"]
        return ConstantRotatingFrame(Omega=[0, 0, 1] * omega, units=self.units)

    def to_phase_space_position(self, x: np.ndarray, v: np.ndarray):
        """(N, 3) inertial arrays as a :class:`~gala.dynamics.PhaseSpacePosition`."""
        return _phase_space_position(x, v, self.units)


def _frequency(value, units: UnitSystem) -> float:
    """A pattern speed Quantity as a signed plain number in ``units``."""
    if not isinstance(value, u.Quantity) or value.unit.physical_type != "frequency":
        raise u.UnitTypeError(
            "pattern_speed must be a Quantity of frequency, e.g. "
            f"40 * u.km / u.s / u.kpc; got {value!r}"
        )
    sign = 1.0 if value.value >= 0 else -1.0
    return sign * _positive(abs(value), "pattern_speed", "frequency", units)


def _ring_points(radii: np.ndarray, phis: np.ndarray) -> np.ndarray:
    """Points (len(radii) * len(phis), 3) in the plane, radius-major."""
    R, phi = np.meshgrid(radii, phis, indexing="ij")
    R, phi = R.ravel(), phi.ravel()
    return np.column_stack([R * np.cos(phi), R * np.sin(phi), np.zeros_like(R)])
