"""Learned against reference potentials: errors in Φ, forces and density by radius."""

from __future__ import annotations

__all__ = [
    "compare_orbits",
    "compare_potentials",
    "plot_comparison",
    "plot_distribution_function",
    "plot_error_profiles",
    "plot_orbits",
    "plot_training",
    "table_records",
]

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy.table import QTable
from gala.potential import PotentialBase

from .directions import random_directions
from .phasespace import strip_units

if TYPE_CHECKING:
    from gala.dynamics import Orbit
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
    pos = _positions(positions, length)
    q = _with_length(pos, length)
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


def table_records(table: QTable) -> list[dict[str, float | int]]:
    """The rows of a comparison table as plain dicts of numbers (units dropped)."""
    return [
        {name: getattr(row[name], "value", row[name]).item() for name in table.colnames}
        for row in table
    ]


def _pointwise_errors(learned, reference, q) -> dict[str, np.ndarray]:
    phi_l, phi_r = (strip_units(p.energy(q)) for p in (learned, reference))
    a_l, a_r = (-strip_units(p.gradient(q)) for p in (learned, reference))
    rho_l, rho_r = (strip_units(p.density(q)) for p in (learned, reference))
    offset = np.median(phi_l - phi_r)
    norm_r = np.linalg.norm(a_r, axis=0)
    cos = np.sum(a_l * a_r, axis=0) / (np.linalg.norm(a_l, axis=0) * norm_r)
    vc_l, vc_r = (strip_units(p.circular_velocity(q)) for p in (learned, reference))
    m_l, m_r = (strip_units(p.mass_enclosed(q)) for p in (learned, reference))
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
    pos = strip_units(q) - _origin(reference, reference.units["length"])[:, None]
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


def _in_length(x, length: u.UnitBase) -> np.ndarray:
    if isinstance(x, u.Quantity):
        if length == u.one and x.unit.physical_type == "length":
            raise u.UnitTypeError(
                "the reference potential is dimensionless; pass positions as "
                "plain numbers in its units, not as a length Quantity"
            )
        return np.asarray(x.to_value(length), dtype=float)
    return np.asarray(x, dtype=float)


def _positions(positions, length: u.UnitBase) -> np.ndarray:
    """Finite (3, N) positions as plain numbers in ``length``."""
    pos = _in_length(positions, length)
    if pos.ndim != 2 or pos.shape[0] != 3:
        raise ValueError(f"positions must have shape (3, N), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or inf")
    return pos


def _with_length(values: np.ndarray, length: u.UnitBase) -> np.ndarray | u.Quantity:
    """Plain numbers in ``length`` as gala takes them: a Quantity unless unitless."""
    return values * length if length != u.one else values


def _unit_label(name: str, unit: u.UnitBase | None) -> str:
    """An axis label, ``name [unit]``, or just ``name`` when dimensionless."""
    return name if unit is None or unit == u.one else f"{name} [{unit}]"


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
        ``_reference``; NaN for an orbit that shows no such extremum, or fewer
        than two pericentres for the period, within the integration) with
        their relative differences (``*_rel_diff``), the
        largest relative energy drift :math:`\max_t |E(t)/E(0) - 1|` in the
        learned potential, and the phase divergence, the distance between
        the two orbits over the reference apocentre: at the end
        (``phase_divergence``) and at every saved time
        (``phase_divergence_t``, shape ``(n_orbits, n_times)``, at the times
        in ``table.meta["t"]``).
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
    with warnings.catch_warnings():
        # gala averages the extrema it finds; an orbit with none (one that
        # escapes, or too short a run) gets NaN, as documented above.
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        extrema = {
            "pericenter": [o.pericenter() for o in orbits],
            "apocenter": [o.apocenter() for o in orbits],
        }
    table = QTable()
    for name, (o_l, o_r) in {
        **extrema,
        "period": [_radial_period(o) for o in orbits],
    }.items():
        table[f"{name}_learned"] = o_l
        table[f"{name}_reference"] = o_r
        table[f"{name}_rel_diff"] = np.abs(strip_units(o_l) / strip_units(o_r) - 1)
    energy = strip_units(orbits[0].energy())
    table["energy_drift"] = np.max(np.abs(energy / energy[0] - 1), axis=0)
    sep = np.linalg.norm(
        strip_units(orbits[0].xyz) - strip_units(orbits[1].xyz), axis=0
    )
    divergence = (sep / strip_units(table["apocenter_reference"])).T
    table["phase_divergence"] = divergence[:, -1]
    table["phase_divergence_t"] = divergence
    table.meta["t"] = orbits[1].t
    return table


def _radial_period(orbit) -> u.Quantity:
    """Mean time between successive pericentres of each orbit (NaN if < 2)."""
    r = np.linalg.norm(strip_units(orbit.xyz), axis=0)
    t = orbit.t
    out = np.full(r.shape[1], np.nan)
    for k in range(r.shape[1]):
        minima = np.flatnonzero((r[1:-1, k] < r[:-2, k]) & (r[1:-1, k] <= r[2:, k]))
        if minima.size >= 2:
            out[k] = np.mean(np.diff(strip_units(t)[minima + 1]))
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
    q = _with_length(pos, length)
    # Only the radial force bias is plotted: no need for every error.
    a_l, a_r = (-strip_units(p.gradient(q)) for p in (learned, reference))
    bias = _radial_bias(a_l, a_r, q, reference)
    phi_l, phi_r = (strip_units(p.energy(q)) for p in (learned, reference))
    phi_l = phi_l - np.median(phi_l - phi_r)
    r = np.linalg.norm(pos, axis=0)
    if extent is None:
        extent = float(np.quantile(r, 0.9))
    grid = np.linspace(-extent, extent, n_grid)
    grid_x, grid_y = np.meshgrid(grid, grid)
    plane = _with_length(
        np.stack([grid_x.ravel(), grid_y.ravel(), np.zeros(grid_x.size)]), length
    )

    fig = Figure(figsize=(16, 3.8), layout="constrained")
    ax = fig.subplots(1, 4)
    energy = reference.units["specific energy"]
    _phi_panel(ax[0], phi_r, phi_l, energy)
    density = reference.units["mass density"]
    for a, (name, fn, unit) in zip(
        ax[1:3],
        (
            ("Φ", lambda p: p.energy(plane), energy),
            ("log10 ρ", lambda p: p.density(plane), density),
        ),
        strict=True,
    ):
        vals = [strip_units(fn(p)).reshape(grid_x.shape) for p in (learned, reference)]
        if name != "Φ":
            # Negative learned density is left blank rather than clipped.
            vals = [np.log10(np.where(val > 0, val, np.nan)) for val in vals]
        _mesh_panel(
            fig,
            a,
            grid,
            grid,
            vals[0],
            limits=(vals[1].min(), vals[1].max()),
            label=_unit_label(name, unit),
        )
        a.contour(grid_x, grid_y, vals[1], colors="w", linewidths=0.7)
        a.set(
            aspect="equal",
            xlabel=_unit_label("x", length),
            ylabel=_unit_label("y", length),
            title=f"learned {name} in z = 0 (white: true)",
        )
    bias_range = np.quantile(bias, [0.01, 0.99]) * 1.5
    if np.ptp(bias_range) == 0:
        bias_range = np.array([-0.01, 0.01])
    ax[3].scatter(r, bias, s=2, alpha=0.3)
    ax[3].axhline(0, color="k", lw=1)
    ax[3].set(
        xscale="log",
        xlabel=_unit_label("r", length),
        ylabel=r"$a_r / a_{r,\rm true} - 1$",
        title="radial force bias",
        ylim=bias_range,
    )
    return fig


def _phi_panel(ax: Axes, phi_r: np.ndarray, phi_l: np.ndarray, unit) -> None:
    """Learned against reference Φ at the stars, with the line of equality."""
    ax.scatter(phi_r, phi_l, s=2, alpha=0.4)
    lims = np.array([phi_r.min(), phi_r.max()])
    ax.plot(lims, lims, color="k", lw=1)
    pad = 0.1 * np.ptp(lims)
    ax.set(
        xlabel=_unit_label(r"$\Phi_{\rm true}$", unit),
        ylabel=_unit_label(r"$\Phi_\theta$", unit),
        title="Φ at the stars",
        ylim=(lims[0] - pad, lims[1] + pad),
    )


def _mesh_panel(
    fig: Figure,
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    *,
    limits: tuple[float, float],
    cmap: str = "viridis",
    label: str | None = None,
) -> None:
    """``values``, shaped (len(y), len(x)), as a colour mesh with a colour bar."""
    im = ax.pcolormesh(
        x, y, values, shading="nearest", vmin=limits[0], vmax=limits[1], cmap=cmap
    )
    fig.colorbar(im, ax=ax, label=label)


# --------------------------------------------------- the DF in (r, v): Fig. 2


def plot_distribution_function(
    model: Any,
    truth: Any,
    *,
    r_max: float | None = None,
    v_max: float | None = None,
    n_grid: int = 32,
    n_directions: int = 8,
    ratio_limits: tuple[float, float] = (0.8, 1.25),
    units: Any = None,
    seed: int = 0,
) -> Figure:
    r"""The paper's Fig. 2: a distribution function in the (r, v) plane, and a ratio.

    Each panel shows the density of stars in radius and speed,
    :math:`p(r, v) = 16\pi^2 r^2 v^2 \langle f \rangle`, where
    :math:`\langle f \rangle` is the DF averaged over the directions of
    :math:`\vec{x}` and :math:`\vec{v}`; panels: the truth, the model, and
    their ratio model/truth (blank where the truth is zero).

    Each of ``model`` and ``truth`` may be

    * a DF object with ``log_prob(x, v)`` (a
      :class:`~gala_deeppotential.FlowEnsemble`) or ``log_f(x, v)`` (a
      :class:`~gala_deeppotential.PlummerTruth` or
      :class:`~gala_deeppotential.EddingtonDF`), evaluated at the cell centres
      for ``n_directions`` random pairs of directions (the same pairs for
      both, so a model identical to the truth gives a ratio of exactly one);
    * or a sample, a pair ``(x, v)`` of arrays each (N, 3) or one (N, 6)
      array, histogrammed as counts / (N Δr Δv).

    Parameters
    ----------
    model, truth : DF object or sample
        See above; positions and velocities in one unit system.
    r_max, v_max : float, optional
        The extent of the plane; default the 95th-percentile radius and the
        99th-percentile speed of the first sample given (required when both
        are DF objects).
    n_grid : int
        Cells per axis.
    n_directions : int
        Direction pairs over which DF objects are averaged.
    ratio_limits : tuple of float
        Colour limits of the ratio panel.
    units : :class:`~gala.units.UnitSystem`, optional
        Only for the axis labels.
    seed : int
        Seed of the directions.

    Returns
    -------
    fig : :class:`matplotlib.figure.Figure`
        Three panels, each with a colour bar; the meshes hold
        :math:`\log_{10} p` (truth, model) and the ratio.

    Examples
    --------
    >>> from gala_deeppotential import PlummerTruth
    >>> truth = PlummerTruth()
    >>> fig = plot_distribution_function(truth, truth, r_max=3, v_max=1.5)
    >>> ratio = fig.axes[2].collections[0].get_array()
    >>> float(ratio.min()), float(ratio.max())
    (1.0, 1.0)
    """
    from matplotlib.figure import Figure

    samples = [s for s in (truth, model) if _as_sample(s) is not None]
    if r_max is None or v_max is None:
        if not samples:
            raise ValueError("give r_max and v_max when both inputs are DF objects")
        x, v = _as_sample(samples[0])
        r_max = r_max or float(np.quantile(np.linalg.norm(x, axis=1), 0.95))
        v_max = v_max or float(np.quantile(np.linalg.norm(v, axis=1), 0.99))
    r_edges = np.linspace(0.0, r_max, n_grid + 1)
    v_edges = np.linspace(0.0, v_max, n_grid + 1)
    rng = np.random.default_rng(seed)
    directions = [random_directions(n_directions, rng) for _ in range(2)]
    p_truth, p_model = (
        _rv_density(s, r_edges, v_edges, directions) for s in (truth, model)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p_truth > 0, p_model / p_truth, np.nan)
        logs = [np.log10(np.where(p > 0, p, np.nan)) for p in (p_truth, p_model)]
    finite = logs[0][np.isfinite(logs[0])]
    limits = (float(finite.max()) - 4, float(finite.max()))

    fig = Figure(figsize=(15, 4), layout="constrained")
    ax = fig.subplots(1, 3, sharey=True)
    r_mid, v_mid = _centres(r_edges), _centres(v_edges)
    length = None if units is None else units["length"]
    speed = None if units is None else units["length"] / units["time"]
    for a, values, title in zip(ax[:2], logs, ("truth", "model"), strict=True):
        _mesh_panel(fig, a, r_mid, v_mid, values, limits=limits, label="log10 p(r, v)")
        a.set(title=title)
    _mesh_panel(fig, ax[2], r_mid, v_mid, ratio, limits=ratio_limits, cmap="RdBu_r")
    ax[2].set(title="model / truth")
    for a in ax:
        a.set(xlabel=_unit_label("r", length))
    ax[0].set(ylabel=_unit_label("v", speed))
    return fig


def _as_sample(source: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x, v)`` (N, 3) arrays if ``source`` is a sample, else None."""
    if hasattr(source, "log_prob") or hasattr(source, "log_f"):
        return None
    if isinstance(source, tuple) and len(source) == 2:
        x, v = (strip_units(a) for a in source)
    else:
        w = strip_units(source)
        if w.ndim != 2 or w.shape[1] != 6:
            raise ValueError(
                "a sample must be a pair (x, v) of (N, 3) arrays or one (N, 6) "
                f"array; got shape {w.shape}"
            )
        x, v = w[:, :3], w[:, 3:]
    return x, v


def _log_density(model: Any, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """ln f from a DF object's ``log_prob`` (torch) or ``log_f`` (numpy)."""
    out = model.log_prob(x, v) if hasattr(model, "log_prob") else model.log_f(x, v)
    if hasattr(out, "detach"):
        out = out.detach().cpu().double().numpy()
    return np.asarray(out, dtype=float)


def _centres(edges: np.ndarray) -> np.ndarray:
    return 0.5 * (edges[1:] + edges[:-1])


def _rv_density(
    source: Any,
    r_edges: np.ndarray,
    v_edges: np.ndarray,
    directions: list[np.ndarray],
) -> np.ndarray:
    """:math:`p(r, v)`, shape (n_v, n_r), from a sample or a DF object."""
    sample = _as_sample(source)
    if sample is not None:
        x, v = sample
        counts, _, _ = np.histogram2d(
            np.linalg.norm(v, axis=1), np.linalg.norm(x, axis=1), [v_edges, r_edges]
        )
        return counts / (len(x) * np.diff(v_edges)[:, None] * np.diff(r_edges))
    r, v = np.meshgrid(_centres(r_edges), _centres(v_edges))
    x_dir, v_dir = directions
    x = r.reshape(-1, 1, 1) * x_dir
    vel = v.reshape(-1, 1, 1) * v_dir
    log_f = _log_density(source, x.reshape(-1, 3), vel.reshape(-1, 3))
    f = np.exp(log_f).reshape(r.size, len(x_dir)).mean(axis=1).reshape(r.shape)
    return 16 * np.pi**2 * r**2 * v**2 * f


# ------------------------------------------------------------ orbits


def plot_orbits(learned: Orbit, reference: Orbit, *, max_orbits: int = 3) -> Figure:
    r"""Orbits in a learned potential overlaid on the same orbits in a reference one.

    One row per orbit: the x-y and R-z projections and the radius against
    time, reference solid, learned dashed.

    Parameters
    ----------
    learned, reference : :class:`~gala.dynamics.Orbit`
        The same initial conditions integrated in each potential, with the
        same times (e.g. ``potential.integrate_orbit(w0, dt=..., n_steps=...)``).
    max_orbits : int
        Plot at most the first this many orbits.

    Returns
    -------
    fig : :class:`matplotlib.figure.Figure`
        ``3 * n`` axes; each holds the reference line, then the learned one.

    Examples
    --------
    >>> from gala.potential import PlummerPotential
    >>> from gala.dynamics import PhaseSpacePosition
    >>> pot = PlummerPotential(m=1.0, b=1.0, units=None)
    >>> w0 = PhaseSpacePosition(pos=[1.0, 0, 0], vel=[0, 0.5, 0.2])
    >>> orbit = pot.integrate_orbit(w0, dt=0.05, n_steps=200)
    >>> len(plot_orbits(orbit, orbit).axes)
    3
    """
    from matplotlib.figure import Figure

    xyz = [_orbit_array(o.xyz)[..., :max_orbits] for o in (reference, learned)]
    if xyz[0].shape != xyz[1].shape:
        raise ValueError(
            f"the orbits differ in shape: {xyz[0].shape} and {xyz[1].shape}; "
            "integrate the same initial conditions for the same times"
        )
    t = strip_units(reference.t)
    n = xyz[0].shape[2]
    length = getattr(reference.xyz, "unit", None)
    time = getattr(reference.t, "unit", None)
    fig = Figure(figsize=(12, 3.6 * n), layout="constrained")
    ax = fig.subplots(n, 3, squeeze=False)
    for k in range(n):
        for pos, style, label in zip(
            xyz, ("-", "--"), ("reference", "learned"), strict=True
        ):
            x, y, z = pos[:, :, k]
            ax[k, 0].plot(x, y, style, lw=0.8, label=label)
            ax[k, 1].plot(np.hypot(x, y), z, style, lw=0.8)
            ax[k, 2].plot(t, np.linalg.norm(pos[:, :, k], axis=0), style, lw=0.8)
        ax[k, 0].set(
            xlabel=_unit_label("x", length),
            ylabel=_unit_label("y", length),
            aspect="equal",
            title=f"orbit {k}, x-y plane",
        )
        ax[k, 1].set(
            xlabel=_unit_label("R", length),
            ylabel=_unit_label("z", length),
            title=f"orbit {k}, meridional plane",
        )
        ax[k, 2].set(
            xlabel=_unit_label("t", time),
            ylabel=_unit_label("r", length),
            title=f"orbit {k}, radius",
        )
    ax[0, 0].legend(fontsize=8)
    return fig


def _orbit_array(xyz) -> np.ndarray:
    """Orbit positions as (3, n_times, n_orbits), for one orbit or many."""
    values = strip_units(xyz)
    return values[..., None] if values.ndim == 2 else values


# ------------------------------------------------------------ error profiles


#: What :func:`plot_error_profiles` draws by default, with axis labels.
ERROR_TITLES = {
    "phi": "potential (median)",
    "acc": "acceleration (median; dashed: 90%)",
    "a_r_bias": "radial force (median)",
    "rho": "density (median)",
    "v_circ": "circular speed (median)",
    "m_enc": "enclosed mass (median)",
    "acc_angle": "force direction (median)",
}
ERROR_LABELS = {
    "phi": r"$|\Delta\Phi| / |\Phi|$",
    "acc": r"$|\Delta \vec{a}| / |\vec{a}|$",
    "a_r_bias": r"$a_r / a_{r,\rm ref} - 1$",
    "rho": r"$|\rho / \rho_{\rm ref} - 1|$",
    "v_circ": r"$|v_c / v_{c,\rm ref} - 1|$",
    "m_enc": r"$|M / M_{\rm ref} - 1|$",
    "acc_angle": "angle between accelerations [deg]",
}


def plot_error_profiles(
    tables: QTable | Mapping[str, QTable],
    *,
    quantities: Sequence[str] = ("phi", "acc", "a_r_bias", "rho"),
) -> Figure:
    r"""Median errors against radius, from :func:`compare_potentials` tables.

    One panel per error; each table is a line through the medians of its
    radial bins, at the bins' geometric centres (the arithmetic one for a bin
    from zero). The acceleration panel also shows the 90th percentile
    (dashed). Signed errors (``a_r_bias``) get a linear axis around zero, the
    others a logarithmic one.

    Parameters
    ----------
    tables : :class:`~astropy.table.QTable` or mapping of str to QTable
        Tables of :func:`compare_potentials`, e.g. with logarithmic
        ``r_bins``; a mapping labels several models.
    quantities : sequence of str
        Columns to plot, from ``phi``, ``acc``, ``acc_angle``, ``a_r_bias``,
        ``rho``, ``v_circ``, ``m_enc``.

    Returns
    -------
    fig : :class:`matplotlib.figure.Figure`
        One axis per quantity; line k of an axis is table k (with the
        90th-percentile line after the median in the ``acc`` panel).

    Examples
    --------
    >>> from gala.potential import PlummerPotential
    >>> ref = PlummerPotential(m=1.0, b=1.0, units=None)
    >>> pos = np.random.default_rng(1).normal(size=(3, 2000))
    >>> table, _ = compare_potentials(
    ...     PlummerPotential(m=1.02, b=1.0, units=None), ref, pos,
    ...     r_bins=np.geomspace(0.1, 5, 8))
    >>> fig = plot_error_profiles(table)
    >>> np.round(fig.axes[1].lines[0].get_ydata(), 6)[:3]
    array([0.02, 0.02, 0.02])
    """
    from matplotlib.figure import Figure

    if isinstance(tables, QTable):
        tables = {"": tables}
    unknown = [q for q in quantities if q not in ERROR_LABELS]
    if unknown:
        raise ValueError(
            f"unknown quantities {unknown}; choose from {list(ERROR_LABELS)}"
        )
    fig = Figure(figsize=(4 * len(quantities), 3.6), layout="constrained")
    ax = np.atleast_1d(fig.subplots(1, len(quantities)))
    for a, name in zip(ax, quantities, strict=True):
        for label, table in tables.items():
            r_lo, r_hi = (strip_units(table[c]) for c in ("r_min", "r_max"))
            r = np.where(r_lo > 0, np.sqrt(r_lo * r_hi), 0.5 * r_hi)
            (line,) = a.plot(r, table[name], "o-", ms=3, label=label or None)
            if name == "acc":
                a.plot(r, table["acc_p90"], "--", color=line.get_color())
        if name == "a_r_bias":
            a.axhline(0, color="k", lw=1)
        else:
            a.set_yscale("log")
        unit = getattr(next(iter(tables.values()))["r_max"], "unit", None)
        a.set(
            xscale="log",
            xlabel=_unit_label("r", unit),
            ylabel=ERROR_LABELS[name],
            title=ERROR_TITLES[name],
        )
    if len(tables) > 1:
        ax[0].legend(fontsize=8)
    return fig


def plot_training(
    df_history: Mapping[str, Any], phi_history: Mapping[str, Any]
) -> Figure:
    """The training curves of the flows (per member) and of the Φ fit.

    Parameters
    ----------
    df_history, phi_history : dict
        :attr:`FlowEnsemble.history <gala_deeppotential.FlowEnsemble.history>`
        and :attr:`PotentialFit.history <gala_deeppotential.PotentialFit.history>`.

    Returns
    -------
    fig : :class:`matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_df, ax_phi = fig.subplots(1, 2)
    epochs = df_history["epoch"]
    for key, style in (("train_loss", "--"), ("val_loss", "-")):
        curves = np.asarray(df_history[key])
        for k in range(curves.shape[1]):
            label = key.replace("_", " ") if k == 0 else None
            ax_df.plot(epochs, curves[:, k], style, color=f"C{k}", label=label)
    ax_df.set(xlabel="epoch", ylabel=r"$-\langle \ln f \rangle$", title="flows")
    ax_df.legend()
    for key, style in (("train_loss", "--"), ("val_loss", "-")):
        ax_phi.plot(phi_history["step"], phi_history[key], style, label=key)
    ax_phi.set(xlabel="step", ylabel="loss (Eq. 3)", title=r"$\Phi_\theta$")
    ax_phi.legend()
    return fig
