"""The ``deep-potential`` command line: ``demo``, ``fit`` and ``compare``."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .df import DEFAULT_N_FLOWS
from .pipeline import PATTERN_SPEED_METHODS
from .summary import fit_summary

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


def _fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`~gala_deeppotential.fit` that the options set."""
    df_options = _json_option(args.df_options, "--df-options")
    potential_options = _json_option(args.potential_options, "--potential-options")
    shortcuts = (
        (df_options, "n_flows", args.n_flows),
        (df_options, "epochs", args.epochs),
        (df_options, "time_limit", args.df_time_limit),
        (potential_options, "n_steps", args.phi_steps),
        (potential_options, "n_samples", args.phi_points),
    )
    for options, key, value in shortcuts:
        if value is not None:
            options[key] = value
    virial: bool | dict[str, Any] = not args.no_virial
    if args.virial_center is not None or args.virial_radius is not None:
        if args.no_virial:
            raise ValueError("--no-virial turns the calibration off; drop --virial-*")
        virial = {"center": args.virial_center, "radius": args.virial_radius}
    return {
        "units": _unit_system(args.units),
        "galcen_frame": _frame(args),
        "columns": _columns(args.column),
        "drop_invalid": args.drop_invalid,
        "df_options": df_options,
        "potential_options": potential_options,
        "virial": virial,
        "selection": _selection(args),
        "errors": {"auto": None, "yes": True, "no": False}[args.errors],
        "pattern_speed": _pattern_speed(args.pattern_speed, args.units),
        "seed": args.seed,
        "device": args.device,
        "threads": args.threads,
        "progress": not args.quiet,
        "distributed": args.distributed,
    }


def _pattern_speed(text: str | None, units: str) -> Any:
    """--pattern-speed as a Quantity in km/s/kpc (a plain number when
    dimensionless), one of ``PATTERN_SPEED_METHODS`` or None."""
    if text is None or text in PATTERN_SPEED_METHODS:
        return text
    try:
        value = float(text)
    except ValueError:
        *first, last = (repr(word) for word in PATTERN_SPEED_METHODS)
        raise ValueError(
            f"--pattern-speed takes a number in km/s/kpc, {', '.join(first)} "
            f"or {last}, got {text!r}"
        ) from None
    if units == "dimensionless":
        return value
    import astropy.units as u

    return value * u.km / u.s / u.kpc


def _run_fit(args: argparse.Namespace) -> None:
    from .pipeline import fit, output_paths
    from .runtime import resolve_device

    paths = output_paths(args.output)
    paths["yaml"].parent.mkdir(parents=True, exist_ok=True)
    catalogue = Path(args.catalogue)
    if not catalogue.is_file():
        raise FileNotFoundError(
            f"no catalogue file at {catalogue}; pass an ECSV, FITS or CSV file "
            "(see deep-potential fit --help)"
        )
    resolve_device(args.device)
    options = _fit_options(args)
    checkpoint_dir = args.checkpoint_dir
    if checkpoint_dir is None and args.resume:
        checkpoint_dir = paths["yaml"].with_suffix(".checkpoint")
    start = time.perf_counter()
    try:
        result = fit(catalogue, checkpoint_dir=checkpoint_dir, **options)
    except KeyboardInterrupt:
        if checkpoint_dir is not None:
            print(
                f"interrupted; the same command resumes from {checkpoint_dir}",
                file=sys.stderr,
            )
        raise
    if args.distributed and os.environ.get("RANK", "0") != "0":
        return  # every rank holds the result; rank 0 writes it
    plot = None if args.no_plot else paths["yaml"].with_suffix(".png")
    report = result.report(threads=args.threads, plot=plot)
    regions = result.stationarity(
        catalogue,
        columns=options["columns"],
        drop_invalid=options["drop_invalid"],
        threads=args.threads,
    )
    report["stationarity"]["regions"] = regions.summary()
    if plot is not None:
        plot_map = plot.with_name(plot.stem + "_stationarity.png")
        regions.plot().savefig(plot_map, dpi=100)
    result.save(paths["yaml"], report=report)
    if not args.quiet:
        print(fit_summary(report, time.perf_counter() - start))
        written = [str(p) for p in paths.values()]
        written += [str(plot), str(plot_map)] if plot else []
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

    from .compare import compare_potentials, table_records
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
    bins = table_records(table)
    print("  ".join(f"{name:>9}" for name in names))
    for row in bins:
        print("  ".join(f"{row[name]:>9.4g}" for name in names))
    print(f"within r < {args.r_summary:g} b:")
    print("  ".join(f"{name:>9}" for name in summary))
    print("  ".join(f"{value:>9.4g}" for value in summary.values()))
    if args.json is not None:
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
        "Galactocentric frame, units, settings and a report of the fit), "
        "MODEL.png (training curves) and MODEL_stationarity.png (where the stars "
        "depart from stationarity in it). Load it with gala.potential.load(MODEL) "
        "after import gala_deeppotential.",
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
    _add_frame_arguments(parser)
    _add_survey_arguments(parser)
    _add_training_arguments(parser)
    _add_virial_arguments(parser)
    _add_output_arguments(parser)


def _add_survey_arguments(parser: argparse.ArgumentParser) -> None:
    survey = parser.add_argument_group(
        "survey",
        "Stars with a NaN or masked radial velocity are kept (they inform the "
        "density of positions and, with the radial velocity integrated out, the "
        "velocities), and a catalogue's parallax_error, pmra_error, "
        "pmdec_error and radial_velocity_error columns are deconvolved, without "
        "flags. A selection function is a HEALPix footprint times a distance "
        "limit (gala_deeppotential.selection.SkySelection).",
    )
    survey.add_argument(
        "--errors",
        choices=("auto", "yes", "no"),
        default="auto",
        help="deconvolve the measurement errors: when the catalogue has error "
        "columns (auto, the default), insisting on them (yes), or never (no)",
    )
    survey.add_argument(
        "--distance-limit",
        type=float,
        metavar="KPC",
        help="the survey's heliocentric distance limit [kpc]: Φ is fitted inside it",
    )
    survey.add_argument(
        "--footprint",
        metavar="MAP",
        help="the survey's footprint, a HEALPix map of completeness in [0, 1] "
        "saved with numpy.save (.npy)",
    )
    survey.add_argument("--footprint-order", choices=("ring", "nested"), default="ring")
    survey.add_argument(
        "--footprint-frame", choices=("galactic", "icrs"), default="galactic"
    )


def _selection(args: argparse.Namespace):
    """The SkySelection the survey options describe, or None."""
    if args.footprint is None and args.distance_limit is None:
        return None
    import astropy.units as u
    import numpy as np

    from .selection import SkySelection

    mask = None
    if args.footprint is not None:
        path = Path(args.footprint)
        if path.suffix != ".npy" or not path.is_file():
            raise ValueError(
                f"--footprint takes a HEALPix map saved with numpy.save (.npy); "
                f"no such file {path}"
            )
        mask = np.load(path)
    limit = None if args.distance_limit is None else args.distance_limit * u.kpc
    return SkySelection(
        mask,
        order=args.footprint_order,
        frame=args.footprint_frame,
        distance_limit=limit,
    )


def _add_frame_arguments(parser: argparse.ArgumentParser) -> None:
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


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    training = parser.add_argument_group("training (defaults are the measured ones)")
    training.add_argument("--n-flows", type=int, default=None, help="ensemble size K")
    training.add_argument(
        "--epochs",
        type=int,
        help="flow training epochs (default: 16, or 32 for a local volume)",
    )
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
        help="further settings of the flows, a JSON object of "
        "gala_deeppotential.DFOptions fields",
    )
    training.add_argument(
        "--potential-options",
        default="{}",
        metavar="JSON",
        help="further settings of the Φ fit, a JSON object of "
        "gala_deeppotential.potential.PotentialOptions fields",
    )
    training.add_argument(
        "--pattern-speed",
        metavar="KM_S_KPC",
        help="fit a potential that rotates rigidly about the Galactocentric z "
        "axis (a bar) at this pattern speed in km/s/kpc (positive: "
        "counterclockwise seen from the north Galactic pole; the Milky Way's "
        "bar is negative); 'continuity' to measure it from the stars' "
        "continuity equation (the whole system, exact 6D stars), 'joint' to fit "
        "it together with the potential, or 'fit' for the first where the "
        "catalogue allows, else the second",
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


def _add_virial_arguments(parser: argparse.ArgumentParser) -> None:
    virial = parser.add_argument_group(
        "virial calibration",
        "By default the forces are scaled so that the stars obey the virial "
        "theorem in a window about their median position; the calibration "
        "declines, with a warning, a catalogue that is not a whole system "
        "(gala_deeppotential.virial.calibrate).",
    )
    virial.add_argument(
        "--no-virial", action="store_true", help="do not calibrate the forces"
    )
    virial.add_argument(
        "--virial-center",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="centre of the window, Galactocentric, in the length unit of --units "
        "(e.g. the Sun's position for a heliocentric volume)",
    )
    virial.add_argument(
        "--virial-radius",
        type=float,
        metavar="R",
        help="the catalogue is complete within R of --virial-center",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
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


def _add_demo_parser(sub) -> None:
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
        "--quick",
        action="store_true",
        help="train the flows for 8 epochs rather than the default 16 (about "
        "half the flows' time, a less accurate potential)",
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


def _run_demo(args: argparse.Namespace) -> None:
    from .demo import DEMO_SIZES, run_plummer_demo

    df_options = dict(DEMO_SIZES["quick" if args.quick else "full"])
    if args.n_flows is not None:
        df_options["n_flows"] = args.n_flows
    run_plummer_demo(
        args.output,
        df_options=df_options,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        progress=not args.quiet,
    )


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
    _add_demo_parser(sub)
    _add_fit_parser(sub)
    _add_compare_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        _run_demo(args)
        return 0
    run = {"fit": _run_fit, "compare": _run_compare}[args.command]
    try:
        run(args)
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        message = " ".join(str(err).split())
        print(f"deep-potential {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0
