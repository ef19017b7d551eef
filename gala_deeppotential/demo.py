"""The paper's demonstration: a Plummer sphere's potential recovered from its stars.

:func:`run_plummer_demo` samples a Plummer sphere, fits it with the one-call
pipeline :func:`~gala_deeppotential.fit`, and measures the learned potential
against the analytic one: errors by radius, the DF against the exact DF, and
orbits in both. ``deep-potential demo`` and ``examples/plummer_end_to_end.py``
both run it.
"""

from __future__ import annotations

__all__ = ["DEMO_SIZES", "run_plummer_demo"]

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .compare import (
    compare_orbits,
    compare_potentials,
    plot_comparison,
    plot_distribution_function,
    plot_error_profiles,
    plot_orbits,
    table_records,
)
from .gala_potential import ExtrapolationWarning
from .mocks import PlummerTruth
from .pipeline import FitResult, fit
from .training import DEFAULT_EPOCHS

#: The command line's two sizes, as ``df_options`` of :func:`run_plummer_demo`:
#: both use the paper's 2^17 stars and 2^15 points for Φ and the default
#: ensemble; ``"full"`` (the default) trains the flows for the package's
#: default number of epochs, ``"quick"`` (``--quick``) for 8.
DEMO_SIZES = {"quick": {"epochs": 8}, "full": {"epochs": DEFAULT_EPOCHS}}

# Radial bins of the table and of the error profiles, in scale radii.
_R_BINS = (0.0, 1.0, 3.0, 10.0)
_PROFILE_BINS = np.geomspace(0.05, 10, 14)


def run_plummer_demo(
    output: str | Path = "demo_output",
    *,
    truth: PlummerTruth | None = None,
    n_stars: int = 2**17,
    df_options: Mapping[str, Any] | None = None,
    potential_options: Mapping[str, Any] | None = None,
    n_held_out: int = 2**14,
    n_orbits: int = 20,
    orbit_steps: int = 5000,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the Plummer demonstration end to end and write its results.

    Samples ``n_stars`` stars of ``truth``, fits them with
    :func:`~gala_deeppotential.fit`, compares the learned potential with
    the analytic one at ``n_held_out`` fresh stars, and integrates
    ``n_orbits`` of them in both potentials for ``orbit_steps`` Leapfrog
    steps of 0.02 :math:`b/\\sqrt{Gm/b}`.

    Parameters
    ----------
    output : str or path-like
        Folder for ``metrics.json``, ``comparison.ecsv`` (errors by radius),
        ``potential.yml`` (+ model file) and the figures ``potential.png``
        (Fig. 3 of Green & Ting 2020), ``df.png`` (Fig. 2: the DF in the
        (r, v) plane), ``orbits.png`` (three orbits in both potentials) and
        ``errors.png`` (errors by radius).
    truth : :class:`~gala_deeppotential.PlummerTruth`, optional
        The sphere; by default the dimensionless one, G = m = b = 1.
    n_stars : int
        Stars in the catalogue.
    df_options, potential_options : dict, optional
        Settings of the two fits (:class:`~.training_options.DFOptions`,
        :class:`~gala_deeppotential.potential.PotentialOptions`); the
        package's defaults otherwise.
    n_held_out, n_orbits, orbit_steps : int
        Held-out stars for the comparison, and the orbits.
    seed : int
        Seed of the sample and of every fit; the held-out stars use
        ``seed + 1000``.
    device, threads, progress
        As for :func:`~gala_deeppotential.fit`.

    Returns
    -------
    metrics : dict
        What is written to ``metrics.json``: ``n_stars``, ``n_flows``,
        ``seed``, ``options``, ``timings`` (``df_s``, ``phi_s``,
        ``total_s``), ``virial`` (the calibration's record), ``df_kl_nats``
        (the flows' Kullback-Leibler divergence from the true DF at the
        held-out stars), ``summary_r_lt_3b`` (median errors within 3 b, see
        :func:`~gala_deeppotential.compare_potentials`), ``bins`` (the same
        by radius) and ``orbits`` (median orbit differences and energy drift).
    """
    truth = PlummerTruth() if truth is None else truth
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else _silent
    start = time.perf_counter()
    x, v = truth.sample(n_stars, seed=seed)
    say(f"[1/4] sampled {len(x)} Plummer stars; fitting the flows and Φ")
    result = fit(
        truth.to_phase_space_position(x, v),
        units=truth.units,
        df_options=df_options,
        potential_options=potential_options,
        seed=seed,
        device=device,
        threads=threads,
        progress=progress,
    )
    result.potential.save(out / "potential.yml")
    say("[2/4] comparing with the analytic Plummer potential")
    x_test, v_test = truth.sample(n_held_out, seed=seed + 1000)
    with warnings.catch_warnings():
        # Held-out stars reach beyond the data on purpose: the outer bin
        # shows how the network extrapolates.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        metrics = _compare(result, truth, x_test, out)
        say(f"[3/4] integrating {n_orbits} orbits in both potentials")
        w0 = truth.to_phase_space_position(x_test[:n_orbits], v_test[:n_orbits])
        metrics["orbits"] = _orbits(result, truth, w0, orbit_steps, out)
    metrics["df_kl_nats"] = float(
        np.mean(
            truth.log_f(x_test, v_test) - result.df.log_prob(x_test, v_test).numpy()
        )
    )
    metrics.update(
        n_stars=n_stars,
        n_flows=result.df.n_flows,
        seed=seed,
        options=result.config,
        virial=result.potential_fit.virial,
        timings={
            "df_s": result.df.history["wall_s"][-1],
            "phi_s": result.potential_fit.wall_s,
            "total_s": time.perf_counter() - start,
        },
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    say(_summary_line(metrics, out))
    return metrics


def _compare(
    result: FitResult, truth: PlummerTruth, x_test: np.ndarray, out: Path
) -> dict[str, Any]:
    """Errors by radius at the held-out stars; the table and three figures."""
    pot, reference, b = result.potential, truth.potential(), truth.b
    table, summary = compare_potentials(
        pot, reference, x_test.T, r_bins=[edge * b for edge in _R_BINS], r_summary=3 * b
    )
    profile, _ = compare_potentials(pot, reference, x_test.T, r_bins=_PROFILE_BINS * b)
    table.write(out / "comparison.ecsv", overwrite=True)
    figures = {
        "potential": plot_comparison(pot, reference, x_test.T),
        "df": plot_distribution_function(
            result.df,
            truth,
            r_max=3 * b,
            v_max=1.5 * truth.velocity_scale,
            n_grid=32,
            n_directions=8,
            units=truth.units,
        ),
        "errors": plot_error_profiles(profile),
    }
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=120)
    return {"summary_r_lt_3b": summary, "bins": table_records(table)}


def _orbits(
    result: FitResult, truth: PlummerTruth, w0: Any, n_steps: int, out: Path
) -> dict[str, float]:
    """Orbits from ``w0`` in both potentials: median differences, and a figure."""
    pot, reference = result.potential, truth.potential()
    dt = 0.02 * truth.b / truth.velocity_scale
    table = compare_orbits(pot, reference, w0, dt=dt, n_steps=n_steps)
    figure = plot_orbits(
        *(p.integrate_orbit(w0[:3], dt=dt, n_steps=n_steps) for p in (pot, reference))
    )
    figure.savefig(out / "orbits.png", dpi=120)
    names = ("pericenter_rel_diff", "apocenter_rel_diff", "period_rel_diff")
    medians = {name: _median(table[name]) for name in names}
    return {**medians, "energy_drift": _median(table["energy_drift"])}


def _median(values: Any) -> float | None:
    """The median of the finite values; None (null in JSON) if there are none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def _summary_line(metrics: dict[str, Any], out: Path) -> str:
    summary = metrics["summary_r_lt_3b"]
    return (
        f"[4/4] done in {metrics['timings']['total_s']:.0f} s: median acceleration "
        f"error {100 * summary['acc']:.2f}% (r < 3b), Φ {100 * summary['phi']:.2f}%, "
        f"ρ {100 * summary['rho']:.1f}%; orbit apocentres within "
        f"{100 * metrics['orbits']['apocenter_rel_diff']:.2f}% (median). "
        f"Results in {out}/"
    )


def _silent(*_args: Any) -> None:
    pass
