r"""gala's axisymmetric spline potential on an R-z grid, with its far field fitted here.

gala's :class:`~gala.potential.CylSplinePotential` interpolates Φ(R, z) on a
grid in C and continues it beyond the grid with an outer multipole expansion
fitted to the grid's edge. gala 1.11 computes that fit with
``scipy.special.sph_harm``, which SciPy 1.17 removed, so its constructor fails.
:class:`MultipoleCylSplinePotential` is the same potential with the fit
computed from Legendre polynomials (for the axisymmetric :math:`m = 0` terms
the two are the same functions).
"""

from __future__ import annotations

__all__ = ["MultipoleCylSplinePotential", "log_grid"]

import astropy.units as u
import gala.potential
import gala.potential.potential
import numpy as np
from gala.potential import CylSplinePotential, MultipolePotential

#: Degree of the outer multipole expansion fitted to the grid's edge.
LMAX = 8


class MultipoleCylSplinePotential(
    CylSplinePotential, parameters=dict(CylSplinePotential._parameters)
):
    r"""An axisymmetric potential from a grid of Φ(R, z), at C speed.

    As :class:`gala.potential.CylSplinePotential` (same parameters: ``grid_R``
    and ``grid_z`` starting at 0, and ``grid_Phi`` of shape
    ``(len(grid_R), len(grid_z))``, symmetric about z = 0), with the outer
    expansion beyond the grid,

    .. math::

        \Phi(r, \theta) = \frac{G m}{r_0} \sum_{l=0}^{8} S_{l0}
            \left(\frac{r}{r_0}\right)^{-(l+1)} Y_l^0(\theta),
        \qquad Y_l^0 = \sqrt{\frac{2l + 1}{4\pi}}\, P_l(\cos\theta),

    fitted by least squares to the grid's outer and upper edges, with
    :math:`r_0` the smaller of the grid's extents and :math:`m` a mass scale
    from the grid's middle.

    Examples
    --------
    A Miyamoto-Nagai disc, tabulated and interpolated:

    >>> import astropy.units as u
    >>> from gala.potential import MiyamotoNagaiPotential
    >>> from gala.units import galactic
    >>> disc = MiyamotoNagaiPotential(
    ...     m=1e11 * u.Msun, a=3 * u.kpc, b=0.3 * u.kpc, units=galactic
    ... )
    >>> grid = log_grid(0.01, 50, 64) * u.kpc
    >>> spline = MultipoleCylSplinePotential.from_potential(disc, grid, grid)
    >>> q = [8.0, 0.0, 0.5] * u.kpc
    >>> bool(abs(spline.energy(q) / disc.energy(q) - 1) < 1e-4)
    True
    """

    @classmethod
    def from_potential(
        cls, potential: gala.potential.PotentialBase, grid_R, grid_z, **kwargs
    ) -> MultipoleCylSplinePotential:
        """Tabulate an axisymmetric gala potential on a grid in the plane y = 0.

        Parameters
        ----------
        potential : :class:`~gala.potential.PotentialBase`
            Axisymmetric about its z axis and symmetric about z = 0.
        grid_R, grid_z : :class:`~astropy.units.Quantity` [length]
            1D grids from 0 (see :func:`log_grid`).
        **kwargs
            Passed to the class (``origin``, ``R``).

        Returns
        -------
        pot : :class:`MultipoleCylSplinePotential`
            In the units of ``potential``.
        """
        RR, zz = np.meshgrid(grid_R, grid_z, indexing="ij")
        xyz = u.Quantity([RR.ravel(), np.zeros(RR.size) * RR.unit, zz.ravel()])
        values = potential.energy(xyz).reshape(RR.shape)
        return cls(
            grid_R=grid_R,
            grid_z=grid_z,
            grid_Phi=values,
            units=potential.units,
            **kwargs,
        )

    def _fit_asympt(self, grid_R, grid_z, grid_Phi, lmax_fit=LMAX):
        """The outer multipole expansion that continues the grid beyond its edge."""
        length, energy = self.units["length"], self.units["specific energy"]
        R = np.asarray(grid_R.to_value(length), dtype=float)
        z = np.asarray(grid_z.to_value(length), dtype=float)
        phi = np.asarray(grid_Phi.to_value(energy), dtype=float)
        top, outer = int(np.argmax(z)), int(np.argmax(R))
        # The grid's upper edge (z = z_max) and outer edge (R = R_max), with
        # their mirror images below the plane.
        edge_R = np.concatenate(
            [R, R, np.full(z.size, R[outer]), np.full(z.size, R[outer])]
        )
        edge_z = np.concatenate(
            [np.full(R.size, z[top]), np.full(R.size, -z[top]), z, -z]
        )
        values = np.concatenate([phi[:, top], phi[:, top], phi[outer], phi[outer]])
        r = np.hypot(edge_R, edge_z)
        cos_polar = edge_z / r
        r0 = min(R[outer], z[top])
        i, j = R.size // 2, z.size // 2
        mass = abs(phi[i, j]) * np.hypot(R[i], z[j]) / self.G
        scale = self.G * mass / r0
        degrees = np.arange(lmax_fit + 1)
        harmonics = np.stack(
            [
                np.sqrt((2 * degree + 1) / (4 * np.pi))
                * np.polynomial.legendre.legval(cos_polar, np.eye(lmax_fit + 1)[degree])
                for degree in degrees
            ],
            axis=1,
        )
        design = (r[:, None] / r0) ** -(degrees + 1) * harmonics
        coefficients, *_ = np.linalg.lstsq(design, values / scale, rcond=None)
        return MultipolePotential(
            lmax=lmax_fit,
            m=mass,
            r_s=r0,
            inner=False,
            units=self.units,
            **{
                f"S{degree}0": float(c)
                for degree, c in zip(degrees, coefficients, strict=True)
            },
        )


def log_grid(r_min: float, r_max: float, n: int) -> np.ndarray:
    """0, then ``n - 1`` points log-spaced from ``r_min`` to ``r_max``."""
    return np.concatenate([[0.0], np.geomspace(r_min, r_max, n - 1)])


def _register_with_gala() -> None:
    """Make ``gala.potential.load`` find :class:`MultipoleCylSplinePotential`."""
    for namespace in (gala.potential, gala.potential.potential):
        name = MultipoleCylSplinePotential.__name__
        if name not in vars(namespace):
            setattr(namespace, name, MultipoleCylSplinePotential)


_register_with_gala()
