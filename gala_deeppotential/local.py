r"""What a survey of the solar neighbourhood measures: local forces, the vertical
force :math:`K_z(z)`, the local density and the Oort constants.

:func:`local_quantities` reads them off any gala potential at a point in the
Galactic plane, and :func:`compare_local` scores a learned potential against
a true one there and at held-out stars; :func:`plot_local` draws them.
"""

from __future__ import annotations

__all__ = ["compare_local", "local_quantities", "plot_local"]

from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy.constants import G
from gala.potential import PotentialBase

from .compare import _positions
from .meridional import _acceleration, _cylindrical
from .phasespace import strip_units

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Half-step of the central differences in R for the Oort constants [kpc].
_DR = 0.01


def local_quantities(
    potential: PotentialBase,
    position: u.Quantity,
    z: u.Quantity | None = None,
) -> dict[str, Any]:
    r"""Local dynamical quantities of a potential at a point of the Galactic plane.

    The point is the foot of ``position`` on the plane z = 0 (e.g. the Sun's
    position gives :math:`R_\odot` at the Sun's azimuth); the z axis through
    the origin is the Galaxy's axis.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
    position : :class:`~astropy.units.Quantity` [length], shape (3,)
        Galactocentric Cartesian position.
    z : :class:`~astropy.units.Quantity` [length], optional
        Heights at which to give :math:`K_z`; 0 to 1.5 kpc by default.

    Returns
    -------
    quantities : dict of :class:`~astropy.units.Quantity`
        ``R`` [kpc]; ``v_c`` [km/s], the circular speed
        :math:`\sqrt{R\,\partial\Phi/\partial R}`; the Oort constants
        ``A`` :math:`= \frac12(v_c/R - dv_c/dR)` and
        ``B`` :math:`= -\frac12(v_c/R + dv_c/dR)` [km/s/kpc]; ``rho`` [Msun/pc3],
        :math:`\nabla^2\Phi/4\pi G` in the plane; ``z`` and ``K_z``
        :math:`= \partial\Phi/\partial z` at those heights (the restoring
        vertical force per unit mass, positive above the plane)
        [km2/(s2 kpc)], with ``Sigma`` :math:`= K_z/2\pi G` [Msun/pc2], the
        surface density within :math:`\pm z` of a slab.

    Examples
    --------
    >>> from gala.potential import MilkyWayPotential
    >>> mw = MilkyWayPotential(version="v2")
    >>> local = local_quantities(mw, [-8.122, 0, 0] * u.kpc)
    >>> round(float(local["v_c"].to_value(u.km / u.s)))
    229
    """
    length = potential.units["length"]
    q = np.asarray(u.Quantity(position).to_value(length), dtype=float).reshape(3)
    R = float(np.hypot(q[0], q[1]))
    radial = np.array([q[0], q[1], 0.0]) / R
    dR = (_DR * u.kpc).to_value(length)
    ring = np.outer(radial, [R - dR, R, R + dR])
    speed_unit = potential.units["length"] / potential.units["time"]
    v_c = _circular_speed(potential, ring, length)
    dv_dR = (v_c[2] - v_c[0]) / (2 * dR)
    A = 0.5 * (v_c[1] / R - dv_dR)
    B = -0.5 * (v_c[1] / R + dv_dR)
    z = np.linspace(0, 1.5, 16) * u.kpc if z is None else u.Quantity(z)
    z_values = np.atleast_1d(z.to_value(length))
    column = np.outer(radial * R, np.ones_like(z_values))
    column[2] = z_values
    K_z = -_acceleration(potential, column, length)[2]
    force_unit = speed_unit**2 / length
    rho = strip_units(potential.density(ring[:, 1:2] * length))[0]
    K = (K_z * force_unit).to(u.km**2 / u.s**2 / u.kpc)
    return {
        "R": (R * length).to(u.kpc),
        "v_c": (v_c[1] * speed_unit).to(u.km / u.s),
        "A": (A * speed_unit / length).to(u.km / u.s / u.kpc),
        "B": (B * speed_unit / length).to(u.km / u.s / u.kpc),
        "rho": (rho * potential.units["mass"] / length**3).to(u.Msun / u.pc**3),
        "z": (z_values * length).to(u.kpc),
        "K_z": K,
        "Sigma": (K / (2 * np.pi * G)).to(u.Msun / u.pc**2),
    }


def _circular_speed(potential: PotentialBase, q: np.ndarray, length) -> np.ndarray:
    r"""The circular speed :math:`\sqrt{R\,\partial\Phi/\partial R}` at plane
    points (3, N), along their own azimuths (a local fit has no other)."""
    a_R = _cylindrical(_acceleration(potential, q, length), q)[0]
    return np.sqrt(np.maximum(-np.hypot(q[0], q[1]) * a_R, 0.0))


def compare_local(
    learned: PotentialBase,
    reference: PotentialBase,
    positions,
    sun: u.Quantity,
    *,
    kz_height: u.Quantity = 1.1 * u.kpc,
    z_min: u.Quantity = 0.2 * u.kpc,
) -> dict[str, float]:
    r"""Errors of a potential learned from a local volume, against the truth.

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
        In the same unit system.
    positions : :class:`~astropy.units.Quantity` [length], shape (3, N)
        Held-out stars of the volume, Galactocentric.
    sun : :class:`~astropy.units.Quantity` [length], shape (3,)
        The observer; the local quantities are taken at its foot on the
        plane.
    kz_height : :class:`~astropy.units.Quantity` [length]
        Height of the :math:`K_z` comparison: the given one if the positions
        reach it above and below the observer, else the highest they do.
    z_min : :class:`~astropy.units.Quantity` [length]
        :math:`a_z` is scored where :math:`|z| \geq z_{\min}`.

    Returns
    -------
    errors : dict
        ``acc_rel_err_median`` and ``acc_rel_err_p90``
        (:math:`|\Delta\vec a|/|\vec a|`), ``aR_rel_err_median``,
        ``az_rel_err_median``; ``rho_local_rel_err``, ``kz_rel_err`` (at
        :math:`\pm` ``kz_height_kpc``, averaged), ``oort_A_err`` and
        ``oort_B_err`` [km/s/kpc], ``vc_rel_err``; the true values
        ``rho_local_true`` [Msun/pc3], ``kz_true`` [km2/s2/kpc], ``oort_A_true``
        and ``oort_B_true``; and the learned ones.
    """
    length = reference.units["length"]
    q = _positions(positions, length)
    a_l, a_r = (_acceleration(p, q, length) for p in (learned, reference))
    acc = np.linalg.norm(a_l - a_r, axis=0) / np.linalg.norm(a_r, axis=0)
    cyl_l, cyl_r = _cylindrical(a_l, q), _cylindrical(a_r, q)
    high = np.abs(q[2]) >= z_min.to_value(length)
    sun_q = np.asarray(u.Quantity(sun).to_value(length), dtype=float)
    reach = float(np.min([q[2].max() - 0.0, 0.0 - q[2].min()]))
    height = min(kz_height.to_value(length), reach)
    z = np.array([-height, height]) * length
    truth, fitted = (
        local_quantities(p, sun_q * length, z) for p in (reference, learned)
    )
    kz_err = np.abs(fitted["K_z"] / truth["K_z"] - 1)
    out = {
        "acc_rel_err_median": float(np.median(acc)),
        "acc_rel_err_p90": float(np.quantile(acc, 0.9)),
        "aR_rel_err_median": float(np.median(np.abs(cyl_l[0] / cyl_r[0] - 1))),
        "az_rel_err_median": float(
            np.median(np.abs(cyl_l[1, high] / cyl_r[1, high] - 1))
        ),
        "rho_local_rel_err": float(abs(fitted["rho"] / truth["rho"] - 1)),
        "kz_rel_err": float(np.mean(kz_err)),
        "kz_height_kpc": float((height * length).to_value(u.kpc)),
        "vc_rel_err": float(abs(fitted["v_c"] / truth["v_c"] - 1)),
        "n": int(q.shape[1]),
        "n_az": int(high.sum()),
    }
    density = u.Msun / u.pc**3
    out["rho_local_true"] = float(truth["rho"].to_value(density))
    out["rho_local_learned"] = float(fitted["rho"].to_value(density))
    for key in ("A", "B"):
        unit = u.km / u.s / u.kpc
        out[f"oort_{key}_true"] = float(truth[key].to_value(unit))
        out[f"oort_{key}_learned"] = float(fitted[key].to_value(unit))
        out[f"oort_{key}_err"] = float((fitted[key] - truth[key]).to_value(unit))
    out["kz_true"] = float(np.mean(np.abs(truth["K_z"].value)))
    out["kz_learned"] = float(np.mean(np.abs(fitted["K_z"].value)))
    return out


def plot_local(
    learned: PotentialBase,
    reference: PotentialBase | None,
    sun: u.Quantity,
    *,
    z_max: u.Quantity = 1.4 * u.kpc,
    radius: u.Quantity = 1.4 * u.kpc,
) -> Figure:
    r"""The vertical force :math:`K_z(z)` and the rotation curve near the observer.

    Parameters
    ----------
    learned : :class:`~gala.potential.PotentialBase`
    reference : :class:`~gala.potential.PotentialBase` or None
        The truth, drawn dashed, if known.
    sun : :class:`~astropy.units.Quantity` [length], shape (3,)
    z_max, radius : :class:`~astropy.units.Quantity` [length]
        Extent of the :math:`K_z` panel and half-width in R of the rotation
        curve.

    Returns
    -------
    fig : :class:`~matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    sun = u.Quantity(sun).to(u.kpc)
    z = np.linspace(-z_max.to_value(u.kpc), z_max.to_value(u.kpc), 57) * u.kpc
    R_sun = float(np.hypot(*sun.value[:2]))
    R = R_sun + np.linspace(-1, 1, 41) * radius.to_value(u.kpc)
    fig, (ax_kz, ax_vc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    curves = [("learned", learned, "-")]
    if reference is not None:
        curves.append(("true", reference, "--"))
    for label, pot, style in curves:
        local = local_quantities(pot, sun, z)
        sigma = local["Sigma"].to_value(u.Msun / u.pc**2)
        ax_kz.plot(z.value, sigma, style, label=label)
        length = pot.units["length"]
        along = np.outer(sun.value * [1, 1, 0] / R_sun, R) * u.kpc
        v_c = _circular_speed(pot, along.to_value(length), length)
        speed = (v_c * length / pot.units["time"]).to_value(u.km / u.s)
        ax_vc.plot(R, speed, style, label=label)
    ax_kz.set_xlabel("z [kpc]")
    ax_kz.set_ylabel(r"$K_z / 2\pi G$ [M$_\odot$ pc$^{-2}$]")
    ax_kz.set_title(f"vertical force at R = {R_sun:.2f} kpc")
    ax_vc.set_xlabel("R [kpc]")
    ax_vc.set_ylabel(r"$v_c$ [km s$^{-1}$]")
    ax_vc.set_title("rotation curve")
    for ax in (ax_kz, ax_vc):
        ax.legend()
    return fig
