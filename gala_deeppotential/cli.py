"""The ``deep-potential`` command line: ``demo``, ``fit`` and ``compare``."""

from __future__ import annotations

__all__ = ["main", "run_demo"]

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .df import DEFAULT_EPOCHS, DEFAULT_N_FLOWS

#: Unit systems the command line knows by name.
UNIT_SYSTEMS = ("galactic", "solarsystem", "dimensionless")

# What each --frame-part option sets in the frame record
# (gala_deeppotential.phasespace.galcen_frame_to_dict).
_FRAME_OPTIONS = {
    "galcen_distance": "galcen_distance_kpc",
    "galcen_ra": "galcen_ra_deg",
    "galcen_dec": "galcen_dec_deg",
    "v_sun": "galcen_v_sun_kms",
    "z_sun": "z_sun_pc",
    "roll": "roll_deg",
}

#: Demo sizes. Both use the paper's 2^17 stars and 2^15 points for Φ and the
#: default ensemble size; the default trains the flows for 8 epochs (about 5
#: minutes on 2 idle cores), ``--full`` for the package's default
#: :data:`~gala_deeppotential.df.DEFAULT_EPOCHS` (about 9 minutes; see
#: docs/benchmarks.md).
DEMO_SIZES = {
    "quick": {"n_stars": 2**17, "n_phi": 2**15, "df_epochs": 8, "phi_steps": 2000},
    "full": {
        "n_stars": 2**17,
        "n_phi": 2**15,
        "df_epochs": DEFAULT_EPOCHS,
        "phi_steps": 2000,
    },
}


def run_demo(
    output: str | Path = "demo_output",
    *,
    full: bool = False,
    n_flows: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    sizes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the paper's Plummer demonstration end to end and write its results.

    Samples a Plummer sphere (G = M = b = 1), fits the flow ensemble, fits
    Φθ on points drawn from it, wraps it as a
    :class:`~gala_deeppotential.DeepPotential`, compares it with gala's
    :class:`~gala.potential.PlummerPotential` on held-out stars, and
    integrates orbits in both.

    Parameters
    ----------
    output : str or path-like
        Folder for ``metrics.json``, ``comparison.ecsv``, ``potential.yml``
        (+ model file) and the figures ``potential.png`` (the paper's Fig. 3),
        ``df.png`` (Fig. 2: the DF in the (r, v) plane), ``orbits.png`` (three
        orbits in both potentials) and ``errors.png`` (errors by radius).
    full : bool
        Train the flows for the package's default 16 epochs rather than 8.
    n_flows : int, optional
        Ensemble size; default that of :class:`~gala_deeppotential.FlowEnsemble`.
    seed : int
        Seed for the sample and every fit.
    device : {"cpu", "cuda"}
        Where to train.
    threads : int, optional
        torch intra-op threads.
    progress : bool
        Show progress bars.
    sizes : dict, optional
        Override ``n_stars``, ``n_phi``, ``df_epochs``, ``phi_steps``.

    Returns
    -------
    metrics : dict
        What is written to ``metrics.json``.
    """
    from gala.units import DimensionlessUnitSystem

    from .compare import (
        compare_orbits,
        compare_potentials,
        plot_comparison,
        plot_distribution_function,
        plot_error_profiles,
        plot_orbits,
    )
    from .df import fit_distribution_function
    from .fit import fit_potential
    from .gala_potential import DeepPotential, ExtrapolationWarning
    from .mocks import PlummerTruth

    size = {**DEMO_SIZES["full" if full else "quick"], **(sizes or {})}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    truth = PlummerTruth()
    timings: dict[str, float] = {}

    def say(msg: str) -> None:
        if progress:
            print(msg, flush=True)

    start = time.perf_counter()
    x, v = truth.sample(size["n_stars"], seed=seed)
    say(f"[1/5] sampled {len(x)} Plummer stars; fitting the flow ensemble")
    df_options = {} if n_flows is None else {"n_flows": n_flows}
    df = fit_distribution_function(
        np.hstack([x, v]),
        device=device,
        seed=seed,
        threads=threads,
        progress=progress,
        epochs=size["df_epochs"],
        **df_options,
    )
    timings["df_s"] = time.perf_counter() - start

    say(f"[2/5] fitting Φ on {size['n_phi']} points drawn from the flows")
    fit = fit_potential(
        df,
        stars=(x, v),
        n_samples=size["n_phi"],
        n_steps=size["phi_steps"],
        seed=seed,
        device=device,
        threads=threads,
        progress=progress,
    )
    timings["phi_s"] = fit.wall_s
    pot = DeepPotential.from_fit(fit, units=DimensionlessUnitSystem())
    pot.save(out / "potential.yml")

    say("[3/5] comparing with the analytic Plummer potential")
    x_test, v_test = truth.sample(2**14, seed=seed + 1000)
    with warnings.catch_warnings():
        # Held-out stars reach beyond the data on purpose: the outer bin
        # shows how the network extrapolates.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table, summary = compare_potentials(pot, truth.potential(), x_test.T)
        profile, _ = compare_potentials(
            pot, truth.potential(), x_test.T, r_bins=np.geomspace(0.05, 10, 14)
        )
        figures = {
            "potential": plot_comparison(pot, truth.potential(), x_test.T),
            "df": plot_distribution_function(
                df, truth, r_max=3, v_max=1.5, n_grid=32, n_directions=8
            ),
            "errors": plot_error_profiles(profile),
        }
        say("[4/5] integrating 20 orbits in both potentials")
        w0 = truth.to_phase_space_position(x_test[:20], v_test[:20])
        orbits = compare_orbits(pot, truth.potential(), w0, dt=0.02, n_steps=5000)
        figures["orbits"] = plot_orbits(
            *(
                p.integrate_orbit(w0[:3], dt=0.02, n_steps=5000)
                for p in (pot, truth.potential())
            )
        )
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=120)
    table.write(out / "comparison.ecsv", overwrite=True)
    timings["total_s"] = time.perf_counter() - start

    metrics = {
        "sizes": size,
        "n_flows": df.n_flows,
        "seed": seed,
        "timings": timings,
        "virial": fit.virial,
        "summary_r_lt_3": summary,
        "bins": [
            dict(zip(table.colnames, map(_plain, row), strict=True)) for row in table
        ],
        "orbits": {
            name: float(np.nanmedian(orbits[name]))
            for name in (
                "pericenter_rel_diff",
                "apocenter_rel_diff",
                "period_rel_diff",
                "energy_drift",
            )
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    say(
        f"[5/5] done in {timings['total_s']:.0f} s: median acceleration error "
        f"{100 * summary['acc']:.2f}% (r < 3), Φ {100 * summary['phi']:.2f}%, "
        f"ρ {100 * summary['rho']:.1f}%; orbit apocentres within "
        f"{100 * metrics['orbits']['apocenter_rel_diff']:.2f}% (median). "
        f"Results in {out}/"
    )
    return metrics


def _plain(value) -> float | int:
    return getattr(value, "value", value).item()


def _unit_system(name: str):
    """The gala unit system called ``name`` (one of :data:`UNIT_SYSTEMS`)."""
    from gala.units import DimensionlessUnitSystem, galactic, solarsystem

    systems = {
        "galactic": galactic,
        "solarsystem": solarsystem,
        "dimensionless": DimensionlessUnitSystem(),
    }
    return systems[name]


def _json_option(text: str, option: str) -> dict[str, Any]:
    """A JSON object given inline or as the path of a JSON file."""
    path = Path(text)
    source = path.read_text(encoding="utf-8") if path.is_file() else text
    try:
        value = json.loads(source)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{option} takes a JSON object or the path of a JSON file; "
            f"could not parse {text!r} ({err})"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got {text!r}")
    return value


def _frame(args: argparse.Namespace) -> dict[str, Any]:
    """The Galactocentric frame record from --frame and the per-part options."""
    from .phasespace import DEFAULT_GALCEN_FRAME, galcen_frame_to_dict

    frame = galcen_frame_to_dict(DEFAULT_GALCEN_FRAME)
    if args.frame is not None:
        frame = _json_option(args.frame, "--frame")
    for option, key in _FRAME_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            frame[key] = value
    return frame


def _columns(pairs: list[str]) -> dict[str, str] | None:
    """``["radial_velocity=rv", ...]`` to ``{"radial_velocity": "rv", ...}``."""
    columns = {}
    for pair in pairs:
        key, sep, name = pair.partition("=")
        if not sep or not key or not name:
            raise ValueError(
                f"--column takes QUANTITY=NAME, e.g. pmra=pm_ra; got {pair!r}"
            )
        columns[key] = name
    return columns or None


def _run_fit(args: argparse.Namespace) -> None:
    from .fit import _output_paths, fit
    from .runtime import resolve_device

    paths = _output_paths(args.output)
    paths["yaml"].parent.mkdir(parents=True, exist_ok=True)
    catalogue = Path(args.catalogue)
    if not catalogue.is_file():
        raise FileNotFoundError(
            f"no catalogue file at {catalogue}; pass an ECSV, FITS or CSV file "
            "(see deep-potential fit --help)"
        )
    resolve_device(args.device)
    df_options = _json_option(args.df_options, "--df-options")
    potential_options = _json_option(args.potential_options, "--potential-options")
    for key, value in (("epochs", args.epochs), ("time_limit", args.df_time_limit)):
        if value is not None:
            df_options[key] = value
    for key, value in (("n_steps", args.phi_steps), ("n_samples", args.phi_points)):
        if value is not None:
            potential_options[key] = value
    checkpoint_dir = args.checkpoint_dir
    if checkpoint_dir is None and args.resume:
        checkpoint_dir = paths["yaml"].with_suffix(".checkpoint")
    start = time.perf_counter()
    try:
        result = fit(
            catalogue,
            units=_unit_system(args.units),
            galcen_frame=_frame(args),
            columns=_columns(args.column),
            drop_invalid=args.drop_invalid,
            n_flows=args.n_flows,
            df_options=df_options,
            potential_options=potential_options,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            progress=not args.quiet,
            checkpoint_dir=checkpoint_dir,
            distributed=args.distributed,
        )
    except KeyboardInterrupt:
        if checkpoint_dir is not None:
            print(
                f"interrupted; the same command resumes from {checkpoint_dir}",
                file=sys.stderr,
            )
        raise
    if result is None:  # a rank other than 0 of a distributed fit
        return
    plot = None if args.no_plot else paths["yaml"].with_suffix(".png")
    report = result.report(threads=args.threads, plot=plot)
    result.save(paths["yaml"], report=report)
    if args.quiet:
        return
    stationarity = report["stationarity"]["median_relative_residual"]
    phi = report["potential"]
    print(
        f"fitted {report['n_stars']} stars ({report['n_dropped']} dropped) in "
        f"{time.perf_counter() - start:.0f} s: median relative stationarity "
        f"residual {stationarity:.3f}, negative density at "
        f"{100 * report['negative_density_fraction']:.2f}% of DF samples; forces "
        f"scaled by {phi['virial_scale']:.4f} ± {phi['virial_scale_error']:.4f} "
        "to obey the stars' virial theorem"
    )
    written = [str(p) for p in paths.values()] + ([str(plot)] if plot else [])
    print("wrote " + ", ".join(written))


def _load_model(path: Path):
    """A potential from the YAML or model file written by ``deep-potential fit``."""
    import gala.potential as gp

    import gala_deeppotential

    from .gala_potential import DeepPotential

    if not path.is_file():
        raise FileNotFoundError(
            f"no model at {path}; pass the .yml or .pt written by deep-potential fit"
        )
    if path.suffix.lower() in (".yml", ".yaml"):
        return gp.load(path, module=gala_deeppotential)
    return DeepPotential.from_file(path)


def _run_compare(args: argparse.Namespace) -> None:
    from gala.units import DimensionlessUnitSystem

    from .compare import compare_potentials
    from .gala_potential import ExtrapolationWarning
    from .mocks import PlummerTruth

    pot = _load_model(Path(args.model))
    dimensionless = isinstance(pot.units, DimensionlessUnitSystem)
    units = pot.units if args.units is None else _unit_system(args.units)
    if isinstance(units, DimensionlessUnitSystem) != dimensionless:
        raise ValueError(
            f"the model is {'dimensionless' if dimensionless else 'physical'}; "
            "pass a --units of the same kind, or omit --units"
        )
    if dimensionless:
        if (args.m, args.b) != (None, None):
            raise ValueError(
                "a dimensionless model is compared with the G = m = b = 1 Plummer "
                "sphere; omit --m and --b"
            )
        truth, b = PlummerTruth(), 1.0
    else:
        if args.m is None or args.b is None:
            raise ValueError(
                f"give the Plummer sphere's --m [{units['mass']}] and "
                f"--b [{units['length']}]"
            )
        pot = pot.replace_units(units)
        truth, b = (
            PlummerTruth(
                m=args.m * units["mass"], b=args.b * units["length"], units=units
            ),
            args.b,
        )
    x, _ = truth.sample(args.n_points, seed=args.seed)
    with warnings.catch_warnings():
        # Stars drawn from the DF reach beyond the data on purpose.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table, summary = compare_potentials(
            pot,
            truth.potential(),
            x.T,
            r_bins=[edge * b for edge in args.r_bins],
            r_summary=args.r_summary * b,
        )
    length = "" if dimensionless else f" [{units['length']}]"
    sphere = (
        "G = m = b = 1"
        if dimensionless
        else (f"m = {args.m:g} {units['mass']}, b = {args.b:g} {units['length']}")
    )
    print(
        f"{args.model} against the Plummer sphere ({sphere}) at {args.n_points} "
        f"stars of its DF (seed {args.seed}); median relative errors by radius{length}:"
    )
    names = table.colnames
    print("  ".join(f"{name:>9}" for name in names))
    for row in table:
        print("  ".join(f"{_plain(row[name]):>9.4g}" for name in names))
    print(f"within r < {args.r_summary:g} b:")
    print("  ".join(f"{name:>9}" for name in summary))
    print("  ".join(f"{value:>9.4g}" for value in summary.values()))
    if args.json is not None:
        bins = [dict(zip(names, map(_plain, row), strict=True)) for row in table]
        Path(args.json).write_text(
            json.dumps({"bins": bins, "summary": summary}, indent=2), encoding="utf-8"
        )


def _add_fit_parser(sub) -> None:
    parser = sub.add_parser(
        "fit",
        help="fit a potential to a stellar catalogue",
        description="Fit the flow ensemble and the potential to a catalogue of "
        "stars with 6D phase-space coordinates, and write the potential as "
        "MODEL (gala YAML), MODEL.pt (the network), MODEL.json (the "
        "Galactocentric frame, units, settings and a report of the fit) and "
        "MODEL.png (training curves). Load it with gala.potential.load(MODEL, "
        "module=gala_deeppotential).",
    )
    parser.add_argument(
        "catalogue",
        help="ECSV, FITS or CSV file of ICRS coordinates, with units on every "
        "column (CSV: 'ra [deg]' headers); default columns ra, dec, distance "
        "(or parallax), pmra, pmdec, radial_velocity",
    )
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="MODEL",
        help="the model's YAML file, e.g. model.yml",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="QUANTITY=NAME",
        help="read QUANTITY (ra, dec, distance, parallax, pmra, pmdec, "
        "radial_velocity) from column NAME; repeat as needed",
    )
    parser.add_argument(
        "--units",
        choices=[name for name in UNIT_SYSTEMS if name != "dimensionless"],
        default="galactic",
        help="unit system of the model (default: galactic = kpc, Myr, Msun); "
        "sky catalogues need a physical one",
    )
    parser.add_argument(
        "--drop-invalid",
        action="store_true",
        help="drop stars with NaN, inf or masked values (reported) instead of stopping",
    )
    frame = parser.add_argument_group(
        "Galactocentric frame",
        "Default: gala_deeppotential.phasespace.DEFAULT_GALCEN_FRAME (astropy's "
        "v4.0 values, pinned). The options below change single parameters.",
    )
    frame.add_argument(
        "--frame",
        metavar="JSON",
        help="the whole frame as JSON (inline or a file) with the keys of "
        "galcen_frame_to_dict: galcen_ra_deg, galcen_dec_deg, "
        "galcen_distance_kpc, galcen_v_sun_kms, z_sun_pc, roll_deg",
    )
    frame.add_argument(
        "--galcen-distance",
        type=float,
        metavar="KPC",
        help="distance from the Sun to the Galactic centre",
    )
    frame.add_argument(
        "--galcen-ra", type=float, metavar="DEG", help="ICRS RA of the Galactic centre"
    )
    frame.add_argument(
        "--galcen-dec",
        type=float,
        metavar="DEG",
        help="ICRS Dec of the Galactic centre",
    )
    frame.add_argument(
        "--v-sun",
        type=float,
        nargs=3,
        metavar=("VX", "VY", "VZ"),
        help="Galactocentric velocity of the Sun [km/s]",
    )
    frame.add_argument(
        "--z-sun", type=float, metavar="PC", help="height of the Sun above the disc"
    )
    frame.add_argument(
        "--roll", type=float, metavar="DEG", help="roll of the Galactic plane"
    )
    training = parser.add_argument_group("training (defaults are the measured ones)")
    training.add_argument("--n-flows", type=int, default=None, help="ensemble size K")
    training.add_argument("--epochs", type=int, help="flow training epochs")
    training.add_argument(
        "--df-time-limit",
        type=float,
        metavar="SECONDS",
        help="wall-clock budget of the flow training",
    )
    training.add_argument("--phi-steps", type=int, help="optimiser steps of the Φ fit")
    training.add_argument(
        "--phi-points", type=int, help="DF samples the Φ fit is trained on"
    )
    training.add_argument(
        "--df-options",
        default="{}",
        metavar="JSON",
        help="further keywords of gala_deeppotential.df.fit_distribution_function",
    )
    training.add_argument(
        "--potential-options",
        default="{}",
        metavar="JSON",
        help="further keywords of gala_deeppotential.fit.fit_potential",
    )
    training.add_argument(
        "--seed", type=int, default=0, help="seed of both fits (default: 0)"
    )
    training.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    training.add_argument("--threads", type=int, default=None, help="torch threads")
    training.add_argument(
        "--distributed",
        action="store_true",
        help="spread the flow ensemble over torchrun's processes: torchrun "
        "--nproc-per-node=N --no-python deep-potential fit ... --distributed",
    )
    run = parser.add_argument_group("checkpoints and output")
    run.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="write checkpoints to DIR; rerunning the same command resumes a "
        "killed fit from there (a DIR of another fit is refused)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="the same with DIR = MODEL with the suffix .checkpoint",
    )
    run.add_argument(
        "--no-plot", action="store_true", help="do not write the training curves"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def _add_compare_parser(sub) -> None:
    parser = sub.add_parser(
        "compare",
        help="compare a fitted potential with an analytic one",
        description="Compare a model written by 'deep-potential fit' with an "
        "analytic potential at stars drawn from its distribution function, "
        "and print the median relative errors of Φ (gauge-fixed), the "
        "acceleration, the density, v_circ and M(<r) by radius "
        "(gala_deeppotential.compare.compare_potentials).",
    )
    parser.add_argument("model", help="the model's YAML (or .pt) file")
    parser.add_argument(
        "--against",
        choices=["plummer"],
        default="plummer",
        help="the reference potential (default: plummer)",
    )
    parser.add_argument(
        "--m",
        type=float,
        help="Plummer mass in the mass unit of --units (Msun for galactic); "
        "omit for a dimensionless model",
    )
    parser.add_argument(
        "--b",
        type=float,
        help="Plummer scale radius in the length unit of --units (kpc for "
        "galactic); omit for a dimensionless model",
    )
    parser.add_argument(
        "--units",
        choices=UNIT_SYSTEMS,
        default=None,
        help="unit system of --m, --b and the table (default: the model's)",
    )
    parser.add_argument(
        "--n-points", type=int, default=4096, help="stars drawn from the DF"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of those stars")
    parser.add_argument(
        "--r-bins",
        type=float,
        nargs="+",
        default=[0.0, 1.0, 3.0, 10.0],
        metavar="EDGE",
        help="radial bin edges in units of b (default: 0 1 3 10)",
    )
    parser.add_argument(
        "--r-summary",
        type=float,
        default=3.0,
        help="the summary line covers r < R_SUMMARY b (default: 3)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deep-potential`` console script.

    Returns
    -------
    status : int
        0 on success; 2 for an error that the message explains (a missing
        file, a bad catalogue or option, no CUDA device, a failed fit),
        reported in one line without a traceback.
    """
    parser = argparse.ArgumentParser(
        prog="deep-potential",
        description="Recover a gravitational potential from a phase-space "
        "snapshot (Green & Ting 2020), as a gala potential.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the Plummer-sphere demonstration end to end",
        description="Sample a Plummer sphere, fit the flows and Φ, compare with "
        "the analytic potential and integrate orbits. Writes metrics.json, "
        "comparison.ecsv, the figures potential.png (Fig. 3), df.png (Fig. 2), "
        "orbits.png and errors.png, and the learned potential to OUTPUT.",
    )
    demo.add_argument("--output", "-o", default="demo_output", help="output folder")
    demo.add_argument(
        "--full",
        action="store_true",
        help="train the flows for the default 16 epochs rather than 8",
    )
    demo.add_argument(
        "--n-flows",
        type=int,
        default=None,
        help=f"ensemble size (default {DEFAULT_N_FLOWS})",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    demo.add_argument("--threads", type=int, default=None, help="torch threads")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    _add_fit_parser(sub)
    _add_compare_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(
            args.output,
            full=args.full,
            n_flows=args.n_flows,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            progress=not args.quiet,
        )
        return 0
    run = {"fit": _run_fit, "compare": _run_compare}[args.command]
    try:
        run(args)
    except (OSError, ValueError, RuntimeError) as err:
        message = " ".join(str(err).split())
        print(f"deep-potential {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0
