"""Accuracy of the fitted potential and pattern speed on a rotating bar.

The truth is :class:`~gala_deeppotential.mocks.BarDF` with its defaults: a DF
of the Jacobi integral, trapped inside corotation, in
:func:`~gala_deeppotential.mocks.barred_galaxy_potential` (a Long-Murali bar,
a Miyamoto-Nagai disc, an NFW halo) turning at 40 km/s/kpc. Prints one JSON
object with a section per source of DF gradients:

* ``exact``: Φθ and Ω_p fitted together on the analytic ∇ln f at 2^15
  points drawn from the truth (``fit_potential(pattern_speed="fit")``): the
  floor set by the Φ fit alone, and this run's baseline timing;
* ``flow``: the whole default pipeline, ``gala_deeppotential.fit`` on the
  stars with ``pattern_speed="fit"``, which here measures Ω_p from the
  stars' continuity equation and fits Φ in that frame
  (``--pattern-speed`` changes it: ``joint`` fits Ω_p together with Φ, a
  number in km/s/kpc gives it, ``none`` fits a static potential).

Each section has ``omega_rel_err`` (|ΔΩ_p|/Ω_p, where Ω_p was fitted),
``acc_rel_err_median`` and ``acc_rel_err_p90`` (the relative error of
∇Φ at 2^14 fresh stars of the same DF within the radius holding 90% of
them, in the bar's frame at the instant it coincides with the inertial
one) and ``wall_s``.

Usage::

    python benchmarks/bar_quality.py                    # both sections, 2^17 stars
    python benchmarks/bar_quality.py --sections exact   # Φ fit only
    python benchmarks/bar_quality.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import astropy.units as u
import numpy as np
import torch
from machine import finish

from gala_deeppotential.mocks import BarDF, barred_galaxy_potential
from gala_deeppotential.pipeline import PATTERN_SPEED_METHODS, fit
from gala_deeppotential.potential import fit_potential

PATTERN_SPEED = 40 * u.km / u.s / u.kpc


def _held_out(truth: BarDF, seed: int) -> tuple[np.ndarray, float]:
    """2^14 fresh stars within the radius holding 90% of them, and that radius."""
    x, _ = truth.sample(2**14, seed=seed + 10_000)
    r = np.linalg.norm(x, axis=1)
    r90 = float(np.quantile(r, 0.9))
    return x[r < r90], r90


def _scores(truth: BarDF, net, x_test: np.ndarray) -> dict:
    """Pattern-speed and force errors of a fitted network."""
    _, grad = net.double().value_and_grad(torch.from_numpy(x_test))
    g_true = truth._grad(x_test)
    err = np.linalg.norm(grad.numpy() - g_true, axis=1)
    err /= np.linalg.norm(g_true, axis=1)
    omega = net.pattern_speed
    return {
        "pattern_speed_km_s_kpc": None
        if omega is None
        else float((omega / u.Myr).to_value(u.km / u.s / u.kpc)),
        "omega_rel_err": None
        if omega is None
        else abs(omega / truth.pattern_speed - 1),
        "acc_rel_err_median": float(np.median(err)),
        "acc_rel_err_p90": float(np.quantile(err, 0.9)),
    }


def _pattern_speed(text: str):
    if text == "none":
        return None
    if text in PATTERN_SPEED_METHODS:
        return text
    return float(text) * u.km / u.s / u.kpc


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="exact,flow")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--pattern-speed",
        default="fit",
        help="the flow section's pattern_speed: 'fit', 'continuity', 'joint', "
        "'none' or km/s/kpc",
    )
    parser.add_argument("--df-options", default="{}", help="JSON DFOptions fields")
    parser.add_argument("--save", default=None, help="YAML of the flow's potential")
    parser.add_argument("--save-df", default=None, help="model file of the flows")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    potential_options: dict = {}
    df_options: dict = json.loads(args.df_options)
    if args.quick:
        args.n_stars = 2**14
        potential_options = {"n_samples": 2**13, "n_steps": 500}
        df_options.setdefault("time_limit", 60.0)

    truth = BarDF(barred_galaxy_potential(), PATTERN_SPEED)
    x_test, r90 = _held_out(truth, args.seed)
    result: dict = {
        "truth": {
            "pattern_speed_km_s_kpc": PATTERN_SPEED.to_value(u.km / u.s / u.kpc),
            "lagrange_radius_kpc": truth.lagrange_radius,
        },
        "r90": r90,
        "n_test": len(x_test),
    }
    sections = args.sections.split(",")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if "exact" in sections:
            start = time.perf_counter()
            n = potential_options.get("n_samples", 2**15)
            x, v = truth.sample(n, seed=args.seed)
            phi_fit = fit_potential(
                (x, v, *truth.grad_log_f(x, v)),
                **{k: val for k, val in potential_options.items() if k != "n_samples"},
                pattern_speed="fit",
                seed=args.seed,
                device=args.device,
                progress=False,
            )
            result["exact"] = {
                **_scores(truth, phi_fit.net, x_test),
                "wall_s": time.perf_counter() - start,
            }
        if "flow" in sections:
            start = time.perf_counter()
            x, v = truth.sample(args.n_stars, seed=args.seed)
            fitted = fit(
                truth.to_phase_space_position(x, v),
                units=truth.units,
                df_options=df_options,
                potential_options=potential_options,
                pattern_speed=_pattern_speed(args.pattern_speed),
                seed=args.seed,
                device=args.device,
                progress=False,
            )
            result["flow"] = {
                **_scores(truth, fitted.potential_fit.net, x_test),
                "pattern_speed": args.pattern_speed,
                "wall_s": time.perf_counter() - start,
                "report": fitted.report(),
            }
            if args.save:
                fitted.potential.save(args.save)
            if args.save_df:
                fitted.df.save(args.save_df)
    return finish(result, load_before, n_stars=args.n_stars, seed=args.seed)


if __name__ == "__main__":
    main()
