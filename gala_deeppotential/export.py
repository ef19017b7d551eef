"""Exports of a :class:`~gala_deeppotential.DeepPotential` to C-speed gala potentials.

A learned potential integrates orbits through gala's Python path, one network
evaluation per step; these functions tabulate it once into gala potentials
that run in C. Each evaluates the network in its own frame (about
``origin``, rotated by ``R``) and returns a potential with the same units and
placement. :class:`~gala_deeppotential.DeepPotential` has them as methods too.
"""

from __future__ import annotations

__all__ = [
    "AsphericityWarning",
    "NonAxisymmetryWarning",
    "asphericity",
    "nonaxisymmetry",
    "to_cylspline",
    "to_scf",
    "to_spherical_spline",
]

import warnings
from typing import TYPE_CHECKING

import numpy as np
from gala.potential import SCFPotential, SphericalSplinePotential
from gala.potential.scf import compute_coeffs_discrete
from gala.units import DimensionlessUnitSystem

from .cylspline import MultipoleCylSplinePotential, log_grid
from .directions import sphere_directions

if TYPE_CHECKING:
    from .gala_potential import DeepPotential


class AsphericityWarning(UserWarning):
    """A spherical export was made of a potential that is measurably aspherical."""


class NonAxisymmetryWarning(UserWarning):
    """An axisymmetric export was made of a potential that measurably is not."""


def _export_radius(pot: DeepPotential, r_max) -> float:
    center = pot._net.center.numpy()
    if np.any(center != 0):
        raise ValueError(
            "this potential was fitted to a local volume centred at "
            f"{np.round(center, 4).tolist()} (network units), away from the "
            "origin; the exports expand the potential about the origin, where "
            "it has no data. Evaluate the DeepPotential itself inside its volume"
        )
    if r_max is not None:
        return float(pot._remove_units(r_max))
    radius = float(pot.parameters["data_radius"].value)
    if not np.isfinite(radius):
        raise ValueError(
            "this potential has no data_radius; pass r_max, the radius out "
            "to which the export should follow the network"
        )
    return radius


def _with_units(pot: DeepPotential, value, physical_type: str):
    if isinstance(pot.units, DimensionlessUnitSystem):
        return value
    return value * pot.units[physical_type]


def asphericity(
    pot: DeepPotential, r_max=None, n_radii: int = 64, n_directions: int = 256
) -> float:
    r"""How far the forces are from spherical, as a fraction.

    .. math::

        \epsilon = \left[\frac{\sum_{r}\langle|\nabla\Phi
        - \bar{g}(r)\hat{r}|^2\rangle}{\sum_{r}\bar{g}(r)^2}\right]^{1/2},
        \qquad \bar{g}(r) = \langle\nabla\Phi\cdot\hat{r}\rangle,

    with averages over directions, on radii log-spaced out to ``r_max``
    about ``origin``. It is the relative RMS force error of the spherical
    export, :meth:`to_spherical_spline`.

    Parameters
    ----------
    r_max : :class:`~astropy.units.Quantity`, numeric [length], optional
        Outer radius; default ``data_radius``.
    n_radii, n_directions : int
        Resolution of the average.

    Returns
    -------
    epsilon : float
    """
    r_max = _export_radius(pot, r_max)
    radii = np.geomspace(r_max / 100, r_max, n_radii)
    dirs = sphere_directions(n_directions)
    grad = pot.network_gradient((radii[:, None, None] * dirs).reshape(-1, 3))
    grad = grad.reshape(n_radii, n_directions, 3)
    g_r = np.einsum("kdi,di->k", grad, dirs) / n_directions
    residual = grad - g_r[:, None, None] * dirs
    return float(np.sqrt(np.mean(residual**2) * 3 / np.mean(g_r**2)))


def to_spherical_spline(
    pot: DeepPotential,
    r_max=None,
    n_knots: int = 32,
    r_min=None,
    n_directions: int = 256,
    interpolation_method: str = "cspline",
    asphericity_tolerance: float = 0.01,
    keep_gauge: bool = True,
) -> SphericalSplinePotential:
    r"""Export the angle-averaged potential as a C-speed spline.

    Tabulates :math:`\bar\Phi(r)`, the average of :math:`\Phi_\theta`
    over ``n_directions`` directions, at ``r = 0`` and ``n_knots - 1``
    radii log-spaced from ``r_min`` to ``r_max``, for gala's
    :class:`~gala.potential.SphericalSplinePotential`. Beyond ``r_max``
    that potential continues as the Keplerian
    :math:`\bar\Phi(r_{\max}) r_{\max}/r`, which is right when the
    gauge has :math:`\Phi \to 0` at infinity, as the ``"kepler"`` gauge of
    :func:`~gala_deeppotential.fit.fit_potential` does.

    Parameters
    ----------
    r_max : :class:`~astropy.units.Quantity`, numeric [length], optional
        Outer knot; default ``data_radius``.
    n_knots : int
        Number of knots, including ``r = 0``. More knots cost more per
        evaluation (GSL's interpolation search), and on a trained Plummer
        network 32 were as accurate as 64 and 128 (``docs/benchmarks.md``).
    r_min : :class:`~astropy.units.Quantity`, numeric [length], optional
        Innermost non-zero knot; default ``r_max / 1000``.
    n_directions : int
        Directions in the angular average (a Fibonacci lattice).
    interpolation_method : str
        GSL interpolation, as for
        :class:`~gala.potential.SphericalSplinePotential`.
    asphericity_tolerance : float
        Warn with :class:`AsphericityWarning` when :meth:`asphericity`
        exceeds this: the export then misses forces by about that
        fraction.
    keep_gauge : bool
        Keep the network's additive constant, so that energies inside
        ``r_max`` equal the network's. Otherwise shift the table so that
        the Keplerian tail meets the network's radial force at ``r_max``
        (forces continuous there, energies offset by a constant); use this
        for a network in another gauge, e.g. :math:`\Phi(0) = 0`.

    Raises
    ------
    ValueError
        If ``keep_gauge`` and :math:`\bar\Phi(r_{\max}) \geq 0`, where
        the tail would repel.

    Returns
    -------
    pot : :class:`~gala.potential.SphericalSplinePotential`
        Centred on ``origin``, in the same unit system.
    """
    r_max = _export_radius(pot, r_max)
    r_min = r_max / 1000 if r_min is None else float(pot._remove_units(r_min))
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got {r_min}, {r_max}")
    epsilon = asphericity(pot, r_max)
    if epsilon > asphericity_tolerance:
        warnings.warn(
            f"the potential is aspherical: the spherical export misses the "
            f"forces by {100 * epsilon:.2g}% (RMS) within r = {r_max:.4g}; "
            "use to_scf(nmax, lmax) with lmax > 0",
            AsphericityWarning,
            stacklevel=2,
        )
    r_knots = np.concatenate([[0.0], np.geomspace(r_min, r_max, n_knots - 1)])
    dirs = sphere_directions(n_directions)
    phi = pot.network_energy((r_knots[:, None, None] * dirs).reshape(-1, 3))
    phi = phi.reshape(n_knots, n_directions).mean(axis=1)
    if keep_gauge:
        if phi[-1] >= 0:
            raise ValueError(
                f"the angle-averaged potential at r_max is {phi[-1]:.4g} >= 0, "
                "so the Keplerian tail beyond r_max would repel; use the "
                "'kepler' gauge of fit_potential, or keep_gauge=False"
            )
        shift = 0.0
    else:
        g_out = pot.network_gradient(r_max * dirs)
        shift = -r_max * np.mean(np.sum(g_out * dirs, axis=1)) - phi[-1]
    return SphericalSplinePotential(
        r_knots=_with_units(pot, r_knots, "length"),
        spline_values=_with_units(pot, phi + shift, "specific energy"),
        spline_value_type="potential",
        interpolation_method=interpolation_method,
        units=pot.units,
        origin=pot.origin.copy(),
    )


def nonaxisymmetry(
    pot: DeepPotential,
    r_max=None,
    z_max=None,
    n_points: int = 32,
    n_phi: int = 32,
) -> float:
    r"""How far the forces are from axisymmetric about the z axis, as a fraction.

    .. math::

        \epsilon = \left[\frac{\sum\langle|\nabla\Phi
        - \bar{g}(R, z)|^2\rangle_\phi}{\sum|\bar{g}(R, z)|^2}\right]^{1/2},

    with :math:`\bar{g}` the azimuthal average of the force's cylindrical
    components, on an R-z grid out to ``r_max`` and ``z_max`` (log-spaced,
    ``n_points`` a side) in the network's frame. It is the relative RMS force
    error of :func:`to_cylspline`'s azimuthal average.

    Parameters
    ----------
    r_max, z_max : :class:`~astropy.units.Quantity`, numeric [length], optional
        Extent of the grid; default ``data_radius`` both.
    n_points, n_phi : int
        Grid points per side, and azimuths.

    Returns
    -------
    epsilon : float
    """
    r_max = _export_radius(pot, r_max)
    z_max = r_max if z_max is None else float(pot._remove_units(z_max))
    R = np.geomspace(r_max / 100, r_max, n_points)
    z = np.concatenate([[0.0], np.geomspace(z_max / 100, z_max, n_points - 1)])
    phi = 2 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    RR, zz, pp = np.meshgrid(R, z, phi, indexing="ij")
    xyz = np.stack([RR * np.cos(pp), RR * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    grad = pot.network_gradient(xyz).reshape(*RR.shape, 3)
    g_R = grad[..., 0] * np.cos(pp) + grad[..., 1] * np.sin(pp)
    g_phi = -grad[..., 0] * np.sin(pp) + grad[..., 1] * np.cos(pp)
    cylindrical = np.stack([g_R, g_phi, grad[..., 2]], axis=-1)
    mean = cylindrical.mean(axis=2, keepdims=True)
    mean[..., 1] = 0.0  # an axisymmetric force has no azimuthal component
    residual = np.sum((cylindrical - mean) ** 2, axis=-1).mean(axis=2)
    return float(np.sqrt(residual.sum() / np.sum(mean[:, :, 0] ** 2)))


def to_cylspline(
    pot: DeepPotential,
    r_max=None,
    z_max=None,
    *,
    n_R: int = 24,
    n_z: int = 24,
    r_min=None,
    n_phi: int = 16,
    axisymmetry_tolerance: float = 0.01,
) -> MultipoleCylSplinePotential:
    r"""Export the azimuthally averaged potential as a C-speed R-z spline.

    Tabulates :math:`\bar\Phi(R, z)`, the average of :math:`\Phi_\theta`
    over ``n_phi`` azimuths and over :math:`\pm z`, on a grid of ``n_R``
    radii and ``n_z`` heights (0, then log-spaced from ``r_min`` to the
    extent), for :class:`~.cylspline.MultipoleCylSplinePotential`, gala's
    ``CylSplinePotential`` with its far field fitted here. Beyond the grid it
    continues as an outer multipole expansion fitted to the grid's edge, so
    the network's gauge (:math:`\Phi \to 0` at infinity for the
    ``"kepler"`` gauge) carries on.

    Parameters
    ----------
    r_max, z_max : :class:`~astropy.units.Quantity`, numeric [length], optional
        Extent of the grid in R and z; default ``data_radius`` both.
    n_R, n_z : int
        Grid points in R and z, including 0. Orbits cost more with more
        points, because gala's C spline is set up anew at every force call:
        for 1000 disc orbits 24 a side costs about 13 times gala's C
        Miyamoto-Nagai potential, 32 about 17 and 64 about 47. On a fitted
        disc the export's error against the truth is the same at 24 and 48
        a side (1.40%, with the default ``r_min``).
    r_min : :class:`~astropy.units.Quantity`, numeric [length], optional
        Innermost non-zero grid point; default ``r_max / 100``.
    n_phi : int
        Azimuths in the average.
    axisymmetry_tolerance : float
        Warn with :class:`NonAxisymmetryWarning` when :func:`nonaxisymmetry`
        exceeds this: the export then misses forces by about that fraction.

    Returns
    -------
    pot : :class:`~.cylspline.MultipoleCylSplinePotential`
        In the same unit system, with the same ``origin`` and ``R``.
    """
    r_max = _export_radius(pot, r_max)
    z_max = r_max if z_max is None else float(pot._remove_units(z_max))
    r_min = r_max / 100 if r_min is None else float(pot._remove_units(r_min))
    if not 0 < r_min < min(r_max, z_max):
        raise ValueError(
            f"need 0 < r_min < r_max, z_max; got {r_min}, {r_max}, {z_max}"
        )
    epsilon = nonaxisymmetry(pot, r_max, z_max)
    if epsilon > axisymmetry_tolerance:
        warnings.warn(
            f"the potential is not axisymmetric: the axisymmetric export misses "
            f"the forces by {100 * epsilon:.2g}% (RMS) within R, |z| < "
            f"{r_max:.4g}, {z_max:.4g}",
            NonAxisymmetryWarning,
            stacklevel=2,
        )
    grid_R, grid_z = log_grid(r_min, r_max, n_R), log_grid(r_min, z_max, n_z)
    phi = 2 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    RR, zz, pp = np.meshgrid(grid_R, grid_z, phi, indexing="ij")
    values = np.zeros(RR.shape[:2])
    for sign in (1.0, -1.0):
        xyz = np.stack([RR * np.cos(pp), RR * np.sin(pp), sign * zz], axis=-1)
        values += pot.network_energy(xyz.reshape(-1, 3)).reshape(RR.shape).mean(axis=2)
    return MultipoleCylSplinePotential(
        grid_R=_with_units(pot, grid_R, "length"),
        grid_z=_with_units(pot, grid_z, "length"),
        grid_Phi=_with_units(pot, values / 2, "specific energy"),
        units=pot.units,
        origin=pot.origin.copy(),
        R=None if pot.R is None else pot.R.copy(),
    )


def to_scf(
    pot: DeepPotential,
    nmax: int,
    lmax: int,
    r_s=None,
    r_max=None,
    n_radial: int = 128,
    n_theta: int | None = None,
    n_phi: int | None = None,
    skip_odd: bool = False,
    skip_even: bool = False,
    skip_m: bool = False,
) -> SCFPotential:
    r"""Export a basis-function expansion of the density, at C speed.

    The density :math:`\rho = \nabla^2\Phi_\theta / 4\pi G`, cut off at
    ``r_max``, is tabulated once, vectorised, on a product quadrature
    grid (Gauss–Legendre in :math:`\xi = (r - r_s)/(r + r_s)` and
    :math:`\cos\theta`, uniform in :math:`\phi`). The quadrature
    weights times the density are handed to gala's
    :func:`~gala.potential.scf.compute_coeffs_discrete` as point masses,
    which turns its sum into the Hernquist & Ostriker (1992) coefficient
    integrals. Energies follow the expansion's own gauge,
    :math:`\Phi \to 0` at infinity.

    Parameters
    ----------
    nmax, lmax : int
        Radial and angular orders of the expansion.
    r_s : :class:`~astropy.units.Quantity`, numeric [length], optional
        Scale radius of the basis; default :math:`r_{1/2}/(1 + \sqrt2)`,
        the Hernquist scale with the network's half-mass radius.
    r_max : :class:`~astropy.units.Quantity`, numeric [length], optional
        Where the density is cut off; default ``data_radius``.
    n_radial : int
        Radial quadrature nodes.
    n_theta, n_phi : int, optional
        Angular quadrature nodes; default ``max(2 lmax + 8, 24)`` each,
        enough to average the network's small-scale angular structure
        (8 nodes missed 7% of the mass of a trained Plummer network).
    skip_odd, skip_even, skip_m : bool
        Passed to :func:`~gala.potential.scf.compute_coeffs_discrete`.

    Returns
    -------
    pot : :class:`~gala.potential.scf.SCFPotential`
        With the same units, ``origin`` and ``R``.
    """
    r_max = _export_radius(pot, r_max)
    if r_s is None:
        r_s = _half_mass_radius(pot, r_max) / (1 + np.sqrt(2))
    else:
        r_s = float(pot._remove_units(r_s))
    n_theta = max(2 * lmax + 8, 24) if n_theta is None else n_theta
    n_phi = max(2 * lmax + 8, 24) if n_phi is None else n_phi

    xi_max = (r_max - r_s) / (r_max + r_s)
    nodes, weights = np.polynomial.legendre.leggauss(n_radial)
    xi = -1 + (nodes + 1) * (xi_max + 1) / 2
    r = r_s * (1 + xi) / (1 - xi)
    # dV = r^2 dr dcos(theta) dphi, with dr/dxi = 2 r_s / (1 - xi)^2
    w_r = weights * (xi_max + 1) / 2 * r**2 * 2 * r_s / (1 - xi) ** 2
    cos_t, w_t = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    sin_t = np.sqrt(1 - cos_t**2)
    unit = np.stack(
        [
            sin_t[:, None] * np.cos(phi),
            sin_t[:, None] * np.sin(phi),
            np.broadcast_to(cos_t[:, None], (n_theta, n_phi)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    xyz = (r[:, None, None] * unit).reshape(-1, 3)
    w = (w_r[:, None] * np.repeat(w_t, n_phi) * (2 * np.pi / n_phi)).ravel()
    mass = pot.network_laplacian(xyz) / (4 * np.pi * pot.G) * w
    total = float(mass.sum())
    if not total > 0:
        raise ValueError(
            f"the network's density integrates to {total:.3g} within r_max; "
            "cannot build an SCF expansion"
        )
    snlm, tnlm = compute_coeffs_discrete(
        xyz,
        mass / total,
        nmax=nmax,
        lmax=lmax,
        r_s=r_s,
        skip_odd=skip_odd,
        skip_even=skip_even,
        skip_m=skip_m,
    )
    return SCFPotential(
        m=_with_units(pot, total, "mass"),
        r_s=_with_units(pot, r_s, "length"),
        Snlm=snlm,
        Tnlm=tnlm,
        units=pot.units,
        origin=pot.origin.copy(),
        R=None if pot.R is None else pot.R.copy(),
    )


def _half_mass_radius(pot: DeepPotential, r_max: float, n: int = 256) -> float:
    """Radius holding half the network's mass within ``r_max``."""
    edges = np.concatenate([[0.0], np.geomspace(r_max / 1e4, r_max, n)])
    mid = 0.5 * (edges[1:] + edges[:-1])
    dirs = sphere_directions(64)
    lap = pot.network_laplacian((mid[:, None, None] * dirs).reshape(-1, 3))
    shell = lap.reshape(n, -1).mean(axis=1) * (edges[1:] ** 3 - edges[:-1] ** 3)
    mass = np.cumsum(np.clip(shell, 0, None))
    return float(np.interp(0.5 * mass[-1], mass, edges[1:]))
