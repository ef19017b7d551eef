"""The analytic Plummer sphere: potential, density, isotropic DF and exact sampler."""

from __future__ import annotations

__all__ = ["PlummerTruth", "plummer_sample"]

import astropy.units as u
import numpy as np
from gala.dynamics import PhaseSpacePosition
from gala.potential import PlummerPotential
from gala.units import DimensionlessUnitSystem, UnitSystem

from ..directions import random_directions
from ._common import _G_in, _phase_space_position, _positive, _r2, _sample_size

# Maximum over q in [0, 1] of q^2 (1 - q^2)^(7/2), at q^2 = 2/9: the envelope
# of the speed rejection sampler.
_SPEED_ENVELOPE = (2.0 / 9.0) * (7.0 / 9.0) ** 3.5
# Normalisation of the dimensionless Plummer DF, f = C (-E)^(7/2), so that
# the integral of f over all of phase space is one.
_DF_NORM = 24.0 * np.sqrt(2.0) / (7.0 * np.pi**3)


class PlummerTruth:
    r"""The analytic Plummer sphere: potential, density and isotropic DF.

    The potential is :math:`\Phi(r) = -G m / \sqrt{r^2 + b^2}` and the
    distribution function is :math:`f \propto (-E)^{7/2}`, normalised here as
    a probability density over phase space (it integrates to one).

    All array methods take and return plain floats in the unit system of the
    instance, with positions and velocities shaped ``(N, 3)``, as the
    training pipeline uses them.

    Parameters
    ----------
    m : :class:`~astropy.units.Quantity`, numeric [mass], optional
        Total mass. Omit together with ``b`` for the dimensionless sphere
        with :math:`G = m = b = 1`.
    b : :class:`~astropy.units.Quantity`, numeric [length], optional
        Scale radius.
    units : :class:`~gala.units.UnitSystem`, optional
        The unit system for arrays; required when ``m`` and ``b`` are given.

    Examples
    --------
    >>> truth = PlummerTruth()
    >>> float(truth.phi(np.zeros((1, 3)))[0])
    -1.0
    """

    def __init__(
        self,
        m: u.Quantity | float | None = None,
        b: u.Quantity | float | None = None,
        units: UnitSystem | None = None,
    ) -> None:
        if (m is None) != (b is None):
            raise ValueError("give both m and b, or neither (for G = m = b = 1)")
        if m is None:
            if units is not None and not isinstance(units, DimensionlessUnitSystem):
                raise ValueError(
                    "without m and b the sphere is dimensionless; pass m and b "
                    "as Quantities to use a physical unit system"
                )
            self.units: UnitSystem = DimensionlessUnitSystem()
            self.m, self.b, self.G = 1.0, 1.0, 1.0
        else:
            if units is None or isinstance(units, DimensionlessUnitSystem):
                raise ValueError(
                    "m and b were given, so pass a physical unit system, "
                    "e.g. units=gala.units.galactic"
                )
            self.units = units
            self.m = _positive(m, "m", "mass", units)
            self.b = _positive(b, "b", "length", units)
            self.G = float(_G_in(units))

    @property
    def velocity_scale(self) -> float:
        r"""The velocity unit of the sphere, :math:`\sqrt{G m / b}`."""
        return float(np.sqrt(self.G * self.m / self.b))

    def potential(self) -> PlummerPotential:
        """The matching gala :class:`~gala.potential.PlummerPotential`."""
        if isinstance(self.units, DimensionlessUnitSystem):
            return PlummerPotential(m=1.0, b=1.0, units=None)
        return PlummerPotential(m=self.m, b=self.b, units=self.units)

    def phi(self, x: np.ndarray) -> np.ndarray:
        r"""Potential :math:`\Phi = -G m (r^2 + b^2)^{-1/2}`, shape ``(N,)``."""
        return -self.G * self.m / np.sqrt(_r2(x) + self.b**2)

    def grad_phi(self, x: np.ndarray) -> np.ndarray:
        r"""Gradient :math:`\nabla\Phi = G m\, \vec{x} (r^2 + b^2)^{-3/2}`, (N, 3)."""
        x = np.asarray(x, dtype=float)
        return self.G * self.m * x / (_r2(x) + self.b**2)[:, None] ** 1.5

    def density(self, x: np.ndarray) -> np.ndarray:
        r"""Mass density :math:`\rho = \frac{3m}{4\pi b^3}(1 + r^2/b^2)^{-5/2}`."""
        return 3 * self.m / (4 * np.pi * self.b**3) * (1 + _r2(x) / self.b**2) ** -2.5

    def mass_enclosed(self, r: np.ndarray) -> np.ndarray:
        r"""Enclosed mass :math:`M(<r) = m\, r^3 (r^2 + b^2)^{-3/2}`."""
        r = np.asarray(r, dtype=float)
        return self.m * r**3 / (r**2 + self.b**2) ** 1.5

    def energy(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r"""Specific energy :math:`E = v^2/2 + \Phi(x)`, shape ``(N,)``."""
        return 0.5 * _r2(v) + self.phi(x)

    def log_f(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        r"""Normalised :math:`\ln f(x, v)`; :math:`-\infty` where :math:`E \geq 0`.

        In the dimensionless sphere :math:`f = \frac{24\sqrt{2}}{7\pi^3}(-E)^{7/2}`;
        in physical units it is rescaled by :math:`b^{-3} (G m / b)^{-3/2}`.
        """
        psi = -self.energy(x, v) / (self.G * self.m / self.b)
        out = np.full(psi.shape, -np.inf)
        bound = psi > 0
        out[bound] = (
            np.log(_DF_NORM)
            + 3.5 * np.log(psi[bound])
            - 3 * np.log(self.b * self.velocity_scale)
        )
        return out

    def grad_log_f(self, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Exact gradients :math:`(\nabla_x \ln f, \nabla_v \ln f)`, each ``(N, 3)``.

        With :math:`\psi = -E`, :math:`\nabla_x \ln f = -\tfrac{7}{2}\nabla\Phi/\psi`
        and :math:`\nabla_v \ln f = -\tfrac{7}{2}\vec{v}/\psi`.

        Raises
        ------
        ValueError
            If any point is unbound (:math:`E \geq 0`), where f vanishes.
        """
        x = np.asarray(x, dtype=float)
        v = np.asarray(v, dtype=float)
        psi = -self.energy(x, v)
        if np.any(psi <= 0):
            raise ValueError(
                f"{np.count_nonzero(psi <= 0)} points are unbound (E >= 0), where "
                "f = 0 and ln f has no gradient; evaluate at bound points only"
            )
        scale = -3.5 / psi[:, None]
        return scale * self.grad_phi(x), scale * v

    def sample(self, n: int, seed: int | np.random.Generator | None = None):
        """Draw ``n`` stars; see :func:`plummer_sample`."""
        x, v = _sample_unit_plummer(n, np.random.default_rng(seed))
        return x * self.b, v * self.velocity_scale

    def to_phase_space_position(self, x: np.ndarray, v: np.ndarray):
        """Wrap (N, 3) arrays as a :class:`~gala.dynamics.PhaseSpacePosition`."""
        return _phase_space_position(x, v, self.units)


def plummer_sample(
    n: int,
    *,
    m: u.Quantity | None = None,
    b: u.Quantity | None = None,
    units: UnitSystem | None = None,
    seed: int | np.random.Generator | None = None,
) -> PhaseSpacePosition:
    r"""Draw an exact sample of the isotropic Plummer sphere.

    Uses the method of Aarseth, Hénon & Wielen (1974): the radius from the
    inverse of the cumulative mass :math:`M(<r)/m = r^3 (1 + r^2)^{-3/2}`,
    the speed :math:`q = v / v_{\rm esc}` by rejection from
    :math:`g(q) \propto q^2 (1 - q^2)^{7/2}`, and isotropic directions.
    The sample is not truncated, so a few stars sit at very large radii.

    Parameters
    ----------
    n : int
        Number of stars.
    m : :class:`~astropy.units.Quantity` [mass], optional
        Total mass. Omit with ``b`` for the dimensionless sphere (G = m = b = 1).
    b : :class:`~astropy.units.Quantity` [length], optional
        Scale radius.
    units : :class:`~gala.units.UnitSystem`, optional
        Unit system of the returned positions and velocities.
    seed : int or :class:`numpy.random.Generator`, optional
        Seed for reproducibility.

    Returns
    -------
    w : :class:`~gala.dynamics.PhaseSpacePosition`
        Positions and velocities of the ``n`` stars.

    Examples
    --------
    >>> w = plummer_sample(1000, seed=1)
    >>> w.pos.xyz.shape
    (3, 1000)
    """
    truth = PlummerTruth(m=m, b=b, units=units)
    x, v = truth.sample(_sample_size(n), seed=seed)
    return truth.to_phase_space_position(x, v)


def _sample_unit_plummer(n: int, rng: np.random.Generator):
    """Positions and velocities ``(n, 3)`` of the G = m = b = 1 Plummer sphere."""
    # 1 - uniform lies in (0, 1], so the radius is finite.
    mass_fraction = 1.0 - rng.random(n)
    r = 1.0 / np.sqrt(mass_fraction ** (-2.0 / 3.0) - 1.0)
    q = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        # About 47% of trials are accepted; oversample so one pass usually does.
        trial = rng.random(2 * todo.size + 16)
        height = rng.random(trial.size) * _SPEED_ENVELOPE
        ok = trial[height < trial**2 * (1 - trial**2) ** 3.5]
        take = min(ok.size, todo.size)
        q[todo[:take]] = ok[:take]
        todo = todo[take:]
    speed = q * np.sqrt(2.0) * (1 + r**2) ** -0.25
    directions = random_directions(n, rng)
    return r[:, None] * directions, speed[:, None] * random_directions(n, rng)
