"""Learned against reference potentials: errors in Φ, forces and density by radius."""

from __future__ import annotations

__all__ = ["compare_orbits", "compare_potentials", "plot_comparison"]

import itertools
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import QTable
from gala.potential import PotentialBase


def compare_potentials(
    learned: PotentialBase,
    reference: PotentialBase,
    positions: u.Quantity | np.ndarray,
    *,
    r_bins: Sequence[float] | u.Quantity = (0.0, 1.0, 3.0, 10.0),
    r_summary: float | u.Quantity | None = 3.0,
) -> tuple[QTable, dict[str, Any]]:
    r"""Compare a learned potential with a reference one at given positions.

    At each position it measures, against the reference:

    * ``phi``: :math:`|\Phi_l - \Phi_r - c| / |\Phi_r|`, with the gauge
      constant :math:`c` the median of :math:`\Phi_l - \Phi_r` (the additive
      constant of a potential is not physical);
    * ``acc``: :math:`|\vec{a}_l - \vec{a}_r| / |\vec{a}_r|`, and ``acc_angle``,
      the angle between the two accelerations;
    * ``a_r_bias``: the radial acceleration ratio :math:`a_{r,l}/a_{r,r} - 1`
      (negative when the learned forces are too weak);
    * ``rho``: :math:`|\rho_l / \rho_r - 1|`, with :math:`\rho = \nabla^2\Phi/4\pi G`;
    * ``v_circ`` and ``m_enc``: relative errors of gala's circular velocity
      and enclosed mass (both from the radial force at the point).

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
        Any gala potentials with the same kind of units.
    positions : :class:`~astropy.units.Quantity` [length], shape (3, N)
        Where to compare: held-out stars are a good choice. Plain arrays are
        read in the reference's units.
    r_bins : sequence of float or :class:`~astropy.units.Quantity` [length]
        Edges of the radial bins (from the reference's origin).
    r_summary : float or :class:`~astropy.units.Quantity` [length], optional
        The summary covers points within this radius (all points if None).

    Returns
    -------
    table : :class:`~astropy.table.QTable`
        One row per radial bin: ``r_min``, ``r_max``, ``n``, and the median of
        each error (with the 90th percentile of ``acc`` as ``acc_p90``).
    summary : dict
        The same medians over all points within ``r_summary``, as floats.

    Examples
    --------
    >>> from gala.potential import PlummerPotential
    >>> ref = PlummerPotential(m=1.0, b=1.0, units=None)
    >>> heavier = PlummerPotential(m=1.02, b=1.0, units=None)
    >>> pos = np.random.default_rng(1).normal(size=(3, 500))
    >>> table, summary = compare_potentials(heavier, ref, pos)
    >>> round(summary["acc"], 3)
    0.02
    """
    length = reference.units["length"]
    pos = _in_length(positions, length)
    if pos.ndim != 2 or pos.shape[0] != 3:
        raise ValueError(f"positions must have shape (3, N), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or inf")
    q = pos * length if length != u.one else pos
    errors = _pointwise_errors(learned, reference, q)
    r = np.linalg.norm(pos - _origin(reference, length)[:, None], axis=0)
    edges = _in_length(r_bins, length)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        sel = (r >= lo) & (r < hi)
        rows.append(_row(errors, sel, lo, hi))
    table = QTable(rows=rows, names=list(rows[0]))
    for col in ("r_min", "r_max"):
        table[col] = table[col] * length if length != u.one else table[col]
    inside = np.ones_like(r, dtype=bool)
    if r_summary is not None:
        inside = r < _in_length(r_summary, length)
    summary = _row(errors, inside, 0.0, np.inf)
    del summary["r_min"], summary["r_max"]
    return table, summary


def _pointwise_errors(learned, reference, q) -> dict[str, np.ndarray]:
    phi_l, phi_r = (_value(p.energy(q)) for p in (learned, reference))
    a_l, a_r = (-_value(p.gradient(q)) for p in (learned, reference))
    rho_l, rho_r = (_value(p.density(q)) for p in (learned, reference))
    offset = np.median(phi_l - phi_r)
    norm_r = np.linalg.norm(a_r, axis=0)
    cos = np.sum(a_l * a_r, axis=0) / (np.linalg.norm(a_l, axis=0) * norm_r)
    vc_l, vc_r = (_value(p.circular_velocity(q)) for p in (learned, reference))
    m_l, m_r = (_value(p.mass_enclosed(q)) for p in (learned, reference))
    return {
        "phi": np.abs(phi_l - phi_r - offset) / np.abs(phi_r),
        "acc": np.linalg.norm(a_l - a_r, axis=0) / norm_r,
        "acc_angle": np.degrees(np.arccos(np.clip(cos, -1, 1))),
        "a_r_bias": _radial_bias(a_l, a_r, q, reference),
        "rho": np.abs(rho_l / rho_r - 1),
        "v_circ": np.abs(vc_l / vc_r - 1),
        "m_enc": np.abs(m_l / m_r - 1),
    }


def _radial_bias(a_l, a_r, q, reference) -> np.ndarray:
    """:math:`a_{r,l}/a_{r,r} - 1`, radial from the reference's origin."""
    pos = _value(q) - _origin(reference, reference.units["length"])[:, None]
    rhat = pos / np.linalg.norm(pos, axis=0)
    return np.sum(a_l * rhat, axis=0) / np.sum(a_r * rhat, axis=0) - 1


def _row(errors: dict[str, np.ndarray], sel: np.ndarray, lo: float, hi: float):
    row: dict[str, Any] = {"r_min": float(lo), "r_max": float(hi), "n": int(sel.sum())}
    for name, values in errors.items():
        row[name] = float(np.median(values[sel])) if sel.any() else np.nan
    row["acc_p90"] = (
        float(np.quantile(errors["acc"][sel], 0.9)) if sel.any() else np.nan
    )
    return row


def _value(x) -> np.ndarray:
    return np.asarray(getattr(x, "value", x), dtype=float)


def _in_length(x, length: u.UnitBase) -> np.ndarray:
    if isinstance(x, u.Quantity):
        if length == u.one and x.unit.physical_type == "length":
            raise u.UnitTypeError(
                "the reference potential is dimensionless; pass positions as "
                "plain numbers in its units, not as a length Quantity"
            )
        return np.asarray(x.to_value(length), dtype=float)
    return np.asarray(x, dtype=float)


def _origin(potential: PotentialBase, length: u.UnitBase) -> np.ndarray:
    origin = getattr(potential, "origin", None)
    if origin is None:
        return np.zeros(3)
    return _in_length(origin, length) if isinstance(origin, u.Quantity) else origin


def compare_orbits(
    learned: PotentialBase,
    reference: PotentialBase,
    w0,
    *,
    dt: float | u.Quantity,
    n_steps: int,
    integrator: str = "leapfrog",
) -> QTable:
    r"""Integrate the same initial conditions in two potentials and compare orbits.

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
    w0 : :class:`~gala.dynamics.PhaseSpacePosition`
        Initial conditions, one per orbit.
    dt : float or :class:`~astropy.units.Quantity` [time]
        Time step.
    n_steps : int
        Number of steps.
    integrator : {"leapfrog", "dopri853", "rk5", "ruth4"}
        gala integrator, by name.

    Returns
    -------
    table : :class:`~astropy.table.QTable`
        One row per orbit: pericentre, apocentre and radial period in each
        potential (means over the orbit; suffixes ``_learned`` and
        ``_reference``) with their relative differences (``*_rel_diff``), the
        largest relative energy drift :math:`\max_t |E(t)/E(0) - 1|` in the
        learned potential, and the phase divergence, the final distance
        between the two orbits over the reference apocentre.
    """
    from gala.integrate import (
        DOPRI853Integrator,
        LeapfrogIntegrator,
        RK5Integrator,
        Ruth4Integrator,
    )

    integrators = {
        "leapfrog": LeapfrogIntegrator,
        "dopri853": DOPRI853Integrator,
        "rk5": RK5Integrator,
        "ruth4": Ruth4Integrator,
    }
    if integrator not in integrators:
        raise ValueError(f"integrator must be one of {sorted(integrators)}")
    orbits = [
        p.integrate_orbit(
            w0, dt=dt, n_steps=n_steps, Integrator=integrators[integrator]
        )
        for p in (learned, reference)
    ]
    table = QTable()
    for name, (o_l, o_r) in {
        "pericenter": [o.pericenter() for o in orbits],
        "apocenter": [o.apocenter() for o in orbits],
        "period": [_radial_period(o) for o in orbits],
    }.items():
        table[f"{name}_learned"] = o_l
        table[f"{name}_reference"] = o_r
        table[f"{name}_rel_diff"] = np.abs(_value(o_l) / _value(o_r) - 1)
    energy = _value(orbits[0].energy())
    table["energy_drift"] = np.max(np.abs(energy / energy[0] - 1), axis=0)
    sep = np.linalg.norm(
        _value(orbits[0].xyz[:, -1]) - _value(orbits[1].xyz[:, -1]), axis=0
    )
    table["phase_divergence"] = sep / _value(table["apocenter_reference"])
    return table


def _radial_period(orbit) -> u.Quantity:
    """Mean time between successive pericentres of each orbit (NaN if < 2)."""
    r = np.linalg.norm(_value(orbit.xyz), axis=0)
    t = orbit.t
    out = np.full(r.shape[1], np.nan)
    for k in range(r.shape[1]):
        minima = np.flatnonzero((r[1:-1, k] < r[:-2, k]) & (r[1:-1, k] <= r[2:, k]))
        if minima.size >= 2:
            out[k] = np.mean(np.diff(_value(t)[minima + 1]))
    return out * t.unit if isinstance(t, u.Quantity) else out


def plot_comparison(
    learned: PotentialBase,
    reference: PotentialBase,
    positions: u.Quantity | np.ndarray,
    *,
    extent: float | None = None,
    n_grid: int = 101,
):
    r"""The paper's Fig. 3, plus the radial force bias, as a matplotlib Figure.

    Panels: learned against reference :math:`\Phi` at the given positions
    (gauge constant removed); the learned :math:`\Phi` and :math:`\rho` in
    the plane :math:`z = 0` with reference contours; and the radial
    acceleration bias :math:`a_r/a_{r,\rm ref} - 1` against radius.

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
    positions : :class:`~astropy.units.Quantity` [length], shape (3, N)
        Points for the scatter and bias panels (held-out stars).
    extent : float, optional
        Half-width of the slices, in the reference's length unit; default
        the 90th-percentile radius of ``positions``.
    n_grid : int
        Grid points per side of the slices.

    Returns
    -------
    fig : :class:`matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    length = reference.units["length"]
    pos = _in_length(positions, length)

    def quantity(p):
        return p * length if length != u.one else p

    # Only the radial force bias is plotted: no need for every error.
    a_l, a_r = (-_value(p.gradient(quantity(pos))) for p in (learned, reference))
    bias = _radial_bias(a_l, a_r, quantity(pos), reference)
    phi_l, phi_r = (_value(p.energy(quantity(pos))) for p in (learned, reference))
    phi_l = phi_l - np.median(phi_l - phi_r)
    r = np.linalg.norm(pos, axis=0)
    if extent is None:
        extent = float(np.quantile(r, 0.9))
    grid = np.linspace(-extent, extent, n_grid)
    gx, gy = np.meshgrid(grid, grid)
    plane = quantity(np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)]))

    fig = Figure(figsize=(16, 3.8), layout="constrained")
    ax = fig.subplots(1, 4)
    ax[0].scatter(phi_r, phi_l, s=2, alpha=0.4)
    lims = np.array([phi_r.min(), phi_r.max()])
    ax[0].plot(lims, lims, color="k", lw=1)
    pad = 0.1 * np.ptp(lims)
    ax[0].set(
        xlabel=r"$\Phi_{\rm true}$",
        ylabel=r"$\Phi_\theta$",
        title="Φ at stars",
        ylim=(lims[0] - pad, lims[1] + pad),
    )
    for a, (name, fn) in zip(
        ax[1:3],
        (("Φ", lambda p: p.energy(plane)), ("log10 ρ", lambda p: p.density(plane))),
        strict=True,
    ):
        vals = [_value(fn(p)).reshape(gx.shape) for p in (learned, reference)]
        if name != "Φ":
            # Negative learned density is left blank rather than clipped.
            vals = [np.log10(np.where(val > 0, val, np.nan)) for val in vals]
        im = a.pcolormesh(
            gx, gy, vals[0], shading="auto", vmin=vals[1].min(), vmax=vals[1].max()
        )
        a.contour(gx, gy, vals[1], colors="w", linewidths=0.7)
        fig.colorbar(im, ax=a)
        a.set(aspect="equal", xlabel="x", ylabel="y", title=f"learned {name}, z = 0")
    bias_range = np.quantile(bias, [0.01, 0.99]) * 1.5
    if np.ptp(bias_range) == 0:
        bias_range = np.array([-0.01, 0.01])
    ax[3].scatter(r, bias, s=2, alpha=0.3)
    ax[3].axhline(0, color="k", lw=1)
    ax[3].set(
        xscale="log",
        xlabel="r" if length == u.one else f"r [{length}]",
        ylabel=r"$a_r / a_{r,\rm true} - 1$",
        title="radial force bias",
        ylim=bias_range,
    )
    return fig
