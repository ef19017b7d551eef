r"""A learned potential against a true axisymmetric one, in the meridional plane.

:func:`compare_disc` gives the numbers a dynamicist asks of a disc galaxy's
potential (forces by cylindrical component, the rotation curve, the density
where there is mass) and :func:`plot_disc_comparison` the figures: meridional
(R, z) maps of Φ, ρ and the force error, the rotation curve and the vertical
force :math:`K_z(z)` at one radius.
"""

from __future__ import annotations

__all__ = ["circular_speed", "compare_disc", "plot_disc_comparison"]

from typing import TYPE_CHECKING

import astropy.units as u
import numpy as np
from gala.potential import PotentialBase

from .compare import _mesh_panel, _positions, _unit_label
from .phasespace import strip_units

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Azimuths over which the learned circular speed and vertical force are
# averaged (a learned potential is only close to axisymmetric).
_N_AZIMUTHS = 8


def _length(potential: PotentialBase) -> u.UnitBase:
    return potential.units["length"]


def _ring(R: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(3, len(R) * _N_AZIMUTHS) points on rings of radius R at height z."""
    azimuth = 2 * np.pi * (np.arange(_N_AZIMUTHS) + 0.5) / _N_AZIMUTHS
    RR, AA = np.meshgrid(R, azimuth, indexing="ij")
    zz = np.broadcast_to(np.asarray(z, dtype=float)[..., None], RR.shape)
    return np.stack([RR * np.cos(AA), RR * np.sin(AA), zz]).reshape(3, -1)


def _cylindrical_forces(potential: PotentialBase, q: np.ndarray, length) -> np.ndarray:
    """(a_R, a_z) at (3, N) points, shape (2, N)."""
    return _cylindrical(_acceleration(potential, q, length), q)


def _acceleration(potential: PotentialBase, q: np.ndarray, length) -> np.ndarray:
    """The acceleration at (3, N) points, shape (3, N), in the potential's units."""
    return -strip_units(potential.gradient(q * length))


def _cylindrical(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(a_R, a_z), shape (2, N), of accelerations ``a`` at points ``q``."""
    R = np.hypot(q[0], q[1])
    return np.stack([(a[0] * q[0] + a[1] * q[1]) / R, a[2]])


def circular_speed(potential: PotentialBase, R, *, length=None) -> np.ndarray:
    r"""The circular speed in the plane, averaged over azimuth.

    :math:`v_c(R) = \sqrt{R\, \partial\bar\Phi/\partial R}`.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
    R : :class:`numpy.ndarray` [length]
        Plane radii, plain numbers in ``length`` (the potential's by default).

    Returns
    -------
    v_c : :class:`numpy.ndarray` [speed]
        In the potential's units; NaN where the force repels.
    """
    length = _length(potential) if length is None else length
    R = np.asarray(R, dtype=float)
    a_R = _cylindrical_forces(potential, _ring(R, 0.0), length)[0]
    mean = a_R.reshape(R.size, _N_AZIMUTHS).mean(axis=1)
    with np.errstate(invalid="ignore"):
        return np.sqrt(-R * mean)


def compare_disc(
    learned: PotentialBase,
    reference: PotentialBase,
    positions,
    *,
    z_min=0.2 * u.kpc,
    density_fraction: float = 0.1,
    n_radii: int = 64,
) -> dict[str, float]:
    r"""Errors of a learned potential against a true axisymmetric one.

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
        The potentials, in the same unit system; the reference's z axis
        through the origin is the symmetry axis.
    positions : :class:`~astropy.units.Quantity` [length], shape (3, N)
        Where to compare: held-out stars (plain numbers in the units'
        length are accepted).
    z_min : :class:`~astropy.units.Quantity` [length]
        The vertical force is scored at points with :math:`|z| \geq z_{\min}`,
        where it is not near zero.
    density_fraction : float
        The density is scored where the true density exceeds this fraction of
        its largest value over ``positions``.
    n_radii : int
        Radii of the rotation-curve comparison, evenly spaced from the 10th
        to the 90th percentile of the positions' cylindrical radii.

    Returns
    -------
    errors : dict
        ``acc_rel_err_median`` and ``acc_rel_err_p90``:
        :math:`|\Delta\vec a|/|\vec a|`; ``aR_rel_err_median``:
        :math:`|\Delta a_R|/|a_R|`; ``az_rel_err_median``:
        :math:`|\Delta a_z|/|a_z|` where :math:`|z| \geq z_{\min}`;
        ``vc_rel_err_median``: :math:`|\Delta v_c|/v_c`;
        ``rho_rel_err_median``: :math:`|\Delta\rho|/\rho`;
        ``phi_rel_err_median``: :math:`|\Delta\Phi|/|\Phi|` after removing the
        median offset; and the numbers of points behind each.
    """
    length = _length(reference)
    q = _positions(positions, length)
    a_l, a_r = (_acceleration(p, q, length) for p in (learned, reference))
    acc = np.linalg.norm(a_l - a_r, axis=0) / np.linalg.norm(a_r, axis=0)
    cyl_l, cyl_r = _cylindrical(a_l, q), _cylindrical(a_r, q)
    z_cut = z_min.to_value(length) if isinstance(z_min, u.Quantity) else float(z_min)
    high = np.abs(q[2]) >= z_cut
    rho_l, rho_r = (strip_units(p.density(q * length)) for p in (learned, reference))
    massive = rho_r > density_fraction * np.max(rho_r)
    phi_l, phi_r = (strip_units(p.energy(q * length)) for p in (learned, reference))
    dphi = phi_l - phi_r
    R = np.hypot(q[0], q[1])
    radii = np.linspace(*np.percentile(R, [10, 90]), n_radii)
    vc_l, vc_r = (circular_speed(p, radii, length=length) for p in (learned, reference))
    return {
        "acc_rel_err_median": float(np.median(acc)),
        "acc_rel_err_p90": float(np.quantile(acc, 0.9)),
        "aR_rel_err_median": float(np.median(np.abs(cyl_l[0] / cyl_r[0] - 1))),
        "az_rel_err_median": float(
            np.median(np.abs(cyl_l[1, high] / cyl_r[1, high] - 1))
        ),
        "vc_rel_err_median": float(np.median(np.abs(vc_l / vc_r - 1))),
        "rho_rel_err_median": float(
            np.median(np.abs(rho_l[massive] / rho_r[massive] - 1))
        ),
        "phi_rel_err_median": float(
            np.median(np.abs(dphi - np.median(dphi)) / np.abs(phi_r))
        ),
        "n": int(q.shape[1]),
        "n_az": int(high.sum()),
        "n_rho": int(massive.sum()),
    }


def plot_disc_comparison(
    learned: PotentialBase,
    reference: PotentialBase,
    positions,
    *,
    radius=8 * u.kpc,
    n_grid: int = 81,
) -> Figure:
    r"""A learned disc-galaxy potential against the true one, as a matplotlib Figure.

    Panels: meridional (R, z) maps of the learned Φ (its median offset from
    the true one removed), log ρ and the relative
    force error :math:`|\Delta\vec a|/|\vec a|` (true contours in white);
    the rotation curve :math:`v_c(R)`; the vertical force :math:`K_z(z)` at
    ``radius``; and the force error at the stars against R. The maps reach
    the 90th percentiles of the stars' R and :math:`|z|`, three times over
    in z; the learned values are at azimuth 0, the curves are averaged over
    azimuth.

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
    positions : :class:`~astropy.units.Quantity` [length], shape (3, N)
        Held-out stars.
    radius : :class:`~astropy.units.Quantity` [length]
        Where :math:`K_z(z)` is drawn.
    n_grid : int
        Grid points per side of the maps.

    Returns
    -------
    fig : :class:`matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    length = _length(reference)
    pos = _positions(positions, length)
    R_star, z_star = np.hypot(pos[0], pos[1]), np.abs(pos[2])
    R_max = float(np.quantile(R_star, 0.9))
    z_max = 3 * float(np.quantile(z_star, 0.9))
    R = np.linspace(0.01 * R_max, R_max, n_grid)
    z = np.linspace(-z_max, z_max, n_grid)
    RR, zz = np.meshgrid(R, z)
    plane = np.stack([RR.ravel(), np.zeros(RR.size), zz.ravel()]) * length

    fig = Figure(figsize=(15, 8), layout="constrained")
    ax = fig.subplots(2, 3)
    units = reference.units
    maps = {
        "Φ": [strip_units(p.energy(plane)) for p in (learned, reference)],
        "log10 ρ": [
            np.log10(np.where(val > 0, val, np.nan))
            for val in (strip_units(p.density(plane)) for p in (learned, reference))
        ],
    }
    a_l, a_r = (-strip_units(p.gradient(plane)) for p in (learned, reference))
    error = np.linalg.norm(a_l - a_r, axis=0) / np.linalg.norm(a_r, axis=0)
    for a, (name, vals), unit in zip(
        ax[0, :2],
        maps.items(),
        (units["specific energy"], units["mass density"]),
        strict=True,
    ):
        learned_map, true_map = (v.reshape(RR.shape) for v in vals)
        if name == "Φ":  # the gauge constants differ
            learned_map = learned_map - np.nanmedian(learned_map - true_map)
        _mesh_panel(
            fig,
            a,
            R,
            z,
            learned_map,
            limits=(np.nanmin(true_map), np.nanmax(true_map)),
            label=_unit_label(name, unit),
        )
        a.contour(RR, zz, true_map, colors="w", linewidths=0.7, linestyles="solid")
        a.set(title=f"learned {name} (white: true)")
    log_error = np.log10(error.reshape(RR.shape))
    _mesh_panel(
        fig,
        ax[0, 2],
        R,
        z,
        log_error,
        limits=(-3.0, -0.5),
        cmap="magma",
        label="log10 |Δa|/|a|",
    )
    ax[0, 2].set(title="force error")
    for a in ax[0]:
        a.set(xlabel=_unit_label("R", length), ylabel=_unit_label("z", length))
    _rotation_curve_panel(ax[1, 0], learned, reference, R, length)
    _vertical_force_panel(ax[1, 1], learned, reference, radius, z, length)
    a_l, a_r = (_acceleration(p, pos, length) for p in (learned, reference))
    star_error = np.linalg.norm(a_l - a_r, axis=0) / np.linalg.norm(a_r, axis=0)
    ax[1, 2].scatter(R_star, star_error, s=2, alpha=0.3, c=z_star, cmap="viridis")
    ax[1, 2].set(
        yscale="log",
        xlabel=_unit_label("R", length),
        ylabel="|Δa|/|a|",
        title=f"force error at the stars (median {np.median(star_error):.2%})",
    )
    return fig


def _speed_unit(units) -> u.UnitBase:
    return units["length"] / units["time"]


def _rotation_curve_panel(ax: Axes, learned, reference, R, length) -> None:
    speed = _speed_unit(reference.units)
    for p, style, name in ((reference, "k-", "true"), (learned, "C1--", "learned")):
        v_c = (circular_speed(p, R, length=length) * speed).to_value(u.km / u.s)
        ax.plot(R, v_c, style, label=name)
    ax.set(
        xlabel=_unit_label("R", length),
        ylabel=_unit_label("v_c", u.km / u.s),
        title="rotation curve",
    )
    ax.legend()


def _vertical_force_panel(ax: Axes, learned, reference, radius, z, length) -> None:
    R0 = radius.to_value(length) if isinstance(radius, u.Quantity) else float(radius)
    unit = reference.units["acceleration"]
    shown = u.km**2 / u.s**2 / u.kpc
    for p, style, name in ((reference, "k-", "true"), (learned, "C1--", "learned")):
        a_z = _cylindrical_forces(p, _ring(np.full(z.size, R0), z), length)[1]
        K_z = -(a_z.reshape(z.size, _N_AZIMUTHS).mean(axis=1) * unit).to_value(shown)
        ax.plot(z, K_z, style, label=name)
    ax.set(
        xlabel=_unit_label("z", length),
        ylabel=_unit_label("K_z = -a_z", shown),
        title=f"vertical force at R = {R0:g} {length}",
    )
    ax.legend()
