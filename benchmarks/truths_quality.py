"""Accuracy of the default pipeline on anisotropic, cusped and tracer spheres.

For each truth, draws 2^17 stars, fits them with ``gala_deeppotential.fit``
(the default pipeline, physical units) and scores the potential at 2^14 fresh
stars of the same DF. Prints one JSON object with a section per truth, each
with

* ``acc_rel_err_median``: median relative acceleration error within 3 scale
  radii, and ``acc_rel_err_median_inner`` within 1 scale radius;
* ``a_r_bias_median``: median of a_r / a_r,true - 1 within 3 scale radii
  (negative: forces too weak);
* ``exact_acc_rel_err_median`` (and ``_inner``): the same for Φ fitted to the
  truth's exact ∇ln f at 2^15 of its points (``fit_potential`` defaults), the
  floor set by the Φ fit alone;
* ``wall_s``: the pipeline's wall time;
* ``df_bins``: where the flows err, per radial bin (edges 0, 1/4, 1/2, 1
  and 3 scale radii): medians of the flows' ∇ₓ ln f and ∇ᵥ ln f projected
  on the truth's, ∇·∇_true/|∇_true|² - 1 (``grad_x_bias``, ``grad_v_bias``:
  negative where the flows flatten ln f), and of their relative errors
  (``grad_x_err``, ``grad_v_err``). In an isotropic DF the force the
  Boltzmann equation infers scales as ∇ₓ/∇ᵥ, so ``grad_x_bias -
  grad_v_bias`` is about the a_r bias the flows cause there.

The truths, all with scale radius 2 kpc and (but for ``tracers``) a mass of
10^11 Msun:

* ``plummer``: the isotropic Plummer sphere, fitted for each of ``--seeds``
  (fresh draws); the section reports the median of each figure over the
  seeds and each run under ``runs``;
* ``om_plummer``: Osipkov–Merritt Plummer sphere, r_a = b (β = 0.5 at b, 0.9
  at 3 b);
* ``hernquist``: isotropic Hernquist sphere (a γ = 1 cusp);
* ``om_hernquist``: Osipkov–Merritt Hernquist sphere, r_a = a;
* ``tangential``: Plummer sphere with constant β = -1/2;
* ``dehnen15``: isotropic Dehnen sphere with a γ = 3/2 cusp;
* ``tracers``: an isotropic Plummer-profile tracer without mass in a heavier
  Plummer halo (M = 5 × 10^11 Msun, b = 6 kpc) that binds it.

With ``--work DIR`` each fit is checkpointed in ``DIR/<truth>_s<seed>``, so
an interrupted run resumes and a finished one is only scored again.

Usage::

    python benchmarks/truths_quality.py --work runs/truths         # ~2 hours
    python benchmarks/truths_quality.py --truths om_plummer --seeds 1
    python benchmarks/truths_quality.py --truths tangential --quick  # a smoke run
    python benchmarks/truths_quality.py --df-options '{"radial_profile": true}'
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import warnings

import astropy.units as u
import numpy as np
from gala.potential import HernquistPotential, PlummerPotential, PotentialBase
from gala.units import galactic
from machine import begin, finish, fit_stars, median_over_runs, quick_options

from gala_deeppotential.compare import compare_potentials
from gala_deeppotential.gala_potential import DeepPotential
from gala_deeppotential.mocks import (
    CuddefordDF,
    DehnenPotential,
    EddingtonDF,
    PlummerTruth,
)
from gala_deeppotential.potential import fit_potential

MASS = 1e11 * u.Msun
SCALE = 2 * u.kpc


def _plummer() -> PlummerPotential:
    return PlummerPotential(m=MASS, b=SCALE, units=galactic)


TRUTHS = {
    "plummer": lambda: PlummerTruth(m=MASS, b=SCALE, units=galactic),
    "om_plummer": lambda: CuddefordDF(_plummer(), anisotropy_radius=SCALE),
    "hernquist": lambda: EddingtonDF(
        HernquistPotential(m=MASS, c=SCALE, units=galactic)
    ),
    "om_hernquist": lambda: CuddefordDF(
        HernquistPotential(m=MASS, c=SCALE, units=galactic), anisotropy_radius=SCALE
    ),
    "tangential": lambda: CuddefordDF(_plummer(), beta=-0.5),
    "dehnen15": lambda: EddingtonDF(
        DehnenPotential(m=MASS, a=SCALE, gamma=1.5, units=galactic)
    ),
    "tracers": lambda: EddingtonDF(
        PlummerPotential(m=5e11 * u.Msun, b=6 * u.kpc, units=galactic), _plummer()
    ),
}
FIGURES = (
    "acc_rel_err_median",
    "acc_rel_err_median_inner",
    "a_r_bias_median",
    "exact_acc_rel_err_median",
    "exact_acc_rel_err_median_inner",
    "wall_s",
)


def _truth_potential(truth):
    pot = truth.potential  # PlummerTruth.potential is a method
    return pot if isinstance(pot, PotentialBase) else pot()


def _score(potential, truth, x_test: np.ndarray) -> dict:
    """Errors within 3 and 1 scale radii at the test stars."""
    a = SCALE.to_value(u.kpc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stars beyond the data's radius
        table, summary = compare_potentials(
            potential,
            _truth_potential(truth),
            x_test.T * u.kpc,
            r_bins=[0.0, a, 3 * a] * u.kpc,
            r_summary=3 * a * u.kpc,
        )
    return {
        "acc_rel_err_median": summary["acc"],
        "acc_rel_err_median_inner": float(table["acc"][0]),
        "acc_rel_err_p90": summary["acc_p90"],
        "a_r_bias_median": summary["a_r_bias"],
        "a_r_bias_median_inner": float(table["a_r_bias"][0]),
    }


def _df_bins(df, truth, seed: int) -> list[dict]:
    """The flows' gradient errors against the truth's, by radial bin."""
    a = SCALE.to_value(u.kpc)
    x, v = truth.sample(2**15, seed=seed + 30_000)
    r = np.linalg.norm(x, axis=1)
    keep = r < 3 * a
    x, v, r = x[keep], v[keep], r[keep]
    exact = truth.grad_log_f(x, v)
    fitted = [g.detach().cpu().double().numpy() for g in df.grad_log_prob(x, v)]
    rows = []
    for lo, hi in itertools.pairwise(np.array([0, 0.25, 0.5, 1.0, 3.0]) * a):
        pick = (r >= lo) & (r < hi)
        row = {"r_kpc": [float(lo), float(hi)], "n": int(pick.sum())}
        for axis, g, t in zip("xv", fitted, exact, strict=True):
            g, t = g[pick], t[pick]
            norm2 = np.sum(t * t, axis=1)
            row[f"grad_{axis}_bias"] = float(
                np.median(np.sum(g * t, axis=1) / norm2 - 1)
            )
            row[f"grad_{axis}_err"] = float(
                np.median(np.linalg.norm(g - t, axis=1) / np.sqrt(norm2))
            )
        rows.append(row)
    return rows


def _exact(truth, seed: int, x_test: np.ndarray, options: dict, device: str) -> dict:
    """Φ fitted to the truth's exact gradients: the floor of the Φ fit."""
    n = options.get("n_samples", 2**15)
    x, v = truth.sample(n, seed=seed + 20_000)
    phi_fit = fit_potential(
        (x, v, *truth.grad_log_f(x, v)),
        **{k: val for k, val in options.items() if k != "n_samples"},
        seed=seed,
        device=device,
        progress=False,
    )
    pot = DeepPotential.from_fit(phi_fit, units=galactic)
    scores = _score(pot, truth, x_test)
    return {
        "exact_acc_rel_err_median": scores["acc_rel_err_median"],
        "exact_acc_rel_err_median_inner": scores["acc_rel_err_median_inner"],
    }


def _run(name: str, seed: int, args, df_options: dict, phi_options: dict) -> dict:
    truth = TRUTHS[name]()
    x_test, _ = truth.sample(2**14, seed=seed + 10_000)
    x, v = truth.sample(args.n_stars, seed=seed)
    work = args.work and os.path.join(args.work, f"{name}_s{seed}")
    start = time.perf_counter()
    fitted = fit_stars(
        truth,
        x,
        v,
        seed=seed,
        device=args.device,
        df_options=df_options,
        potential_options=phi_options,
        checkpoint_dir=work,
    )
    run = {**_score(fitted.potential, truth, x_test)}
    run["wall_s"] = time.perf_counter() - start
    if not args.no_exact:
        run.update(_exact(truth, seed, x_test, phi_options, args.device))
    run["df_bins"] = _df_bins(fitted.df, truth, seed)
    run["virial"] = fitted.potential_fit.virial
    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truths", default=",".join(TRUTHS))
    parser.add_argument("--seeds", default="1,2,3", help="the Plummer sphere's")
    parser.add_argument("--seed", type=int, default=1, help="the other truths'")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--no-exact", action="store_true", help="skip the floor")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="folder that keeps the fits")
    parser.add_argument(
        "--df-options", default="{}", help="JSON of DFOptions fields for the flows"
    )
    args = parser.parse_args(argv)
    load_before = begin(args.threads)
    args.n_stars, df_options, phi_options = quick_options(args.quick, args.n_stars)
    df_options.update(json.loads(args.df_options))
    result: dict = {"df_options": df_options}
    for name in args.truths.split(","):
        if name not in TRUTHS:
            parser.error(f"unknown truth {name!r}; choose from {', '.join(TRUTHS)}")
        if name == "plummer":
            seeds = [int(s) for s in args.seeds.split(",")]
            runs = [_run(name, s, args, df_options, phi_options) for s in seeds]
            result[name] = median_over_runs(runs, seeds, FIGURES)
        else:
            result[name] = _run(name, args.seed, args, df_options, phi_options)
    plummer = result.get("plummer", {}).get("acc_rel_err_median")
    if plummer:
        result["ratio_to_plummer"] = {
            name: section["acc_rel_err_median"] / plummer
            for name, section in result.items()
            if name in TRUTHS and name != "plummer"
        }
    return finish(result, load_before, n_stars=args.n_stars)


if __name__ == "__main__":
    main()
