"""Dehnen's (1993) family of cusped spheres as a gala potential."""

from __future__ import annotations

__all__ = ["DehnenPotential"]

import numpy as np
from gala.potential import PotentialBase
from gala.potential.common import PotentialParameter


class DehnenPotential(PotentialBase):
    r"""The Dehnen (1993) sphere: a cusp :math:`\rho \propto r^{-\gamma}` inside ``a``.

    .. math::

        \rho(r) = \frac{(3 - \gamma) M}{4\pi} \frac{a}{r^\gamma (r + a)^{4 - \gamma}},
        \qquad
        \Phi(r) = -\frac{G M}{a} \frac{1 - \left(\frac{r}{r + a}\right)^{2 - \gamma}}
                       {2 - \gamma},

    with the enclosed mass :math:`M (r / (r + a))^{3 - \gamma}`. γ = 1 is the
    Hernquist sphere and γ = 2 the Jaffe sphere (where Φ is the limit
    :math:`(G M / a) \ln(r / (r + a))`); γ = 3/2 lies between, a cusp steeper
    than any of gala's built-in spheres but Jaffe's. Evaluated in Python, so
    orbits in it integrate more slowly than in gala's C potentials.

    Parameters
    ----------
    m : :class:`~astropy.units.Quantity` [mass]
        Total mass.
    a : :class:`~astropy.units.Quantity` [length]
        Scale radius.
    gamma : float
        Inner slope, :math:`0 \le \gamma < 3`.
    units : :class:`~gala.units.UnitSystem`, optional
    origin : array_like, optional
        The centre.

    Examples
    --------
    >>> import astropy.units as u
    >>> from gala.potential import HernquistPotential
    >>> from gala.units import galactic
    >>> dehnen = DehnenPotential(m=1e11 * u.Msun, a=2 * u.kpc, gamma=1.0,
    ...                          units=galactic)
    >>> hernquist = HernquistPotential(m=1e11 * u.Msun, c=2 * u.kpc, units=galactic)
    >>> x = [1.0, 2.0, 3.0] * u.kpc
    >>> bool(np.isclose(dehnen.energy(x), hernquist.energy(x)))
    True
    """

    m = PotentialParameter("m", physical_type="mass")
    a = PotentialParameter("a", physical_type="length")
    gamma = PotentialParameter("gamma", physical_type="dimensionless")

    def __init__(self, *args, units=None, origin=None, R=None, **kwargs) -> None:
        super().__init__(*args, units=units, origin=origin, R=R, **kwargs)
        gamma = self._value("gamma")
        if not (0 <= gamma < 3):
            raise ValueError(f"gamma must satisfy 0 <= gamma < 3, got {gamma}")
        if not (self._value("m") > 0 and self._value("a") > 0):
            raise ValueError("the mass m and the scale radius a must be positive")

    def _value(self, name: str) -> float:
        value = self.parameters[name]
        return float(getattr(value, "value", value))

    def _radius(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3) about the origin, and their radii."""
        x = np.asarray(q, dtype=np.float64) - self.origin
        return x, np.sqrt(np.sum(x * x, axis=1))

    def _terms(self) -> tuple[float, float, float]:
        return self._value("m") * self.G, self._value("a"), self._value("gamma")

    def _phi_of_r(self, r: np.ndarray) -> np.ndarray:
        gm, a, gamma = self._terms()
        ratio = r / (r + a)
        if gamma == 2:
            return gm / a * np.log(ratio)
        return -gm / a * (1 - ratio ** (2 - gamma)) / (2 - gamma)

    def _dphi_dr(self, r: np.ndarray) -> np.ndarray:
        """G M(r) / r^2."""
        gm, a, gamma = self._terms()
        return gm * r ** (1 - gamma) / (r + a) ** (3 - gamma)

    def _rho_of_r(self, r: np.ndarray) -> np.ndarray:
        _, a, gamma = self._terms()
        m = self._value("m")
        return (3 - gamma) * m / (4 * np.pi) * a / (r**gamma * (r + a) ** (4 - gamma))

    def _energy(self, q: np.ndarray, t=0.0) -> np.ndarray:
        return self._phi_of_r(self._radius(q)[1])

    def _gradient(self, q: np.ndarray, t=0.0) -> np.ndarray:
        # gala hands the gradient positions shaped (3, N) and wants (3, N) back.
        x, r = self._radius(np.asarray(q).T)
        return np.ascontiguousarray((x * (self._dphi_dr(r) / r)[:, None]).T)

    def _density(self, q: np.ndarray, t=0.0) -> np.ndarray:
        return self._rho_of_r(self._radius(q)[1])

    def _hessian(self, q: np.ndarray, t=0.0) -> np.ndarray:
        x, r = self._radius(q)
        n = x / r[:, None]
        slope = self._dphi_dr(r) / r
        # d2Phi/dr2 = 4 pi G rho - 2 G M(r) / r^3.
        curvature = 4 * np.pi * self.G * self._rho_of_r(r) - 2 * slope
        outer = n[:, :, None] * n[:, None, :]
        return (curvature - slope)[:, None, None] * outer + slope[:, None, None] * (
            np.eye(3)
        )
