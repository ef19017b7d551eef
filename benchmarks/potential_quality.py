"""Accuracy of the fitted potential on the Plummer sphere, exact and flow gradients.

Prints one JSON object with a section per source of DF gradients:

* ``exact``: Φθ fitted on the analytic ∇ln f of the Plummer DF at points drawn
  from it; the floor set by the Φ fit alone;
* ``flow``: the whole pipeline, a default ``FlowEnsemble`` fitted to the stars,
  then Φθ on points drawn from it, its forces scaled to obey the stars' virial
  theorem (``--no-virial`` skips that).

Each section holds, for held-out true-DF points with r < 3 (G = M = b = 1),
the median and 90th-percentile relative acceleration error, the median Φ error
after removing the best constant, the median density error, and the same per
radial bin ([0, 1], [1, 3], [3, 10]) under ``bins``, with the radial force
bias a_r/a_r,true - 1; ``wall_s``; and ``virial``, the calibration applied
(empty without one).

Usage::

    python benchmarks/potential_quality.py                   # paper sizes
    python benchmarks/potential_quality.py --quick           # about 2 minutes
    python benchmarks/potential_quality.py --sections exact  # Φ fit only
    python benchmarks/potential_quality.py --sections flow --save-df df.pt
    python benchmarks/potential_quality.py --sections flow --load-df df.pt --no-radial
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np
import torch

from gala_deeppotential.compare import compare_potentials, plot_comparison
from gala_deeppotential.df import FlowEnsemble
from gala_deeppotential.flows import FACTORIZATIONS
from gala_deeppotential.gala_potential import DeepPotential
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.potential import fit_potential
from gala_deeppotential.training import fit_distribution_function
from gala_deeppotential.virial import calibrate

BINS = (0.0, 1.0, 3.0, 10.0)


def _section(fit, truth: PlummerTruth, x_test: np.ndarray, wall_s: float) -> dict:
    pot = DeepPotential.from_fit(fit)
    with warnings.catch_warnings():
        # The outer bin reaches beyond the data on purpose.
        warnings.simplefilter("ignore")
        table, summary = compare_potentials(
            pot, truth.potential(), x_test.T, r_bins=BINS
        )
    bins = {
        f"{row['r_min']:g}-{row['r_max']:g}": {
            "n": int(row["n"]),
            "acc_rel_err_median": float(row["acc"]),
            "acc_rel_err_p90": float(row["acc_p90"]),
            "phi_rel_err_median": float(row["phi"]),
            "rho_rel_err_median": float(row["rho"]),
            "a_r_bias_median": float(row["a_r_bias"]),
        }
        for row in table
    }
    return {
        "acc_rel_err_median": summary["acc"],
        "acc_rel_err_p90": summary["acc_p90"],
        "phi_rel_err_median": summary["phi"],
        "rho_rel_err_median": summary["rho"],
        "a_r_bias_median": summary["a_r_bias"],
        "bins": bins,
        "wall_s": wall_s,
        "phi_fit_s": fit.wall_s,
        "restarts": len(fit.history["restarts"]),
        "virial": fit.virial,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--sections", default="exact,flow")
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--n-phi", type=int, default=2**15)
    parser.add_argument("--phi-steps", type=int, default=2000)
    parser.add_argument("--n-flows", type=int, default=None, help="default: package")
    parser.add_argument("--df-seconds", type=float, default=None)
    parser.add_argument("--df-epochs", type=int, default=None, help="default: package")
    parser.add_argument("--form", default="log_f", choices=["log_f", "f"])
    parser.add_argument("--activation", default="silu")
    parser.add_argument(
        "--radial",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="radius as an input of the Φ network (default: the package's, on)",
    )
    parser.add_argument(
        "--factorization", default="joint", choices=sorted(FACTORIZATIONS)
    )
    parser.add_argument(
        "--no-virial",
        action="store_true",
        help="skip the virial calibration of the forces by the stars",
    )
    parser.add_argument("--hidden-features", type=int, default=None)
    parser.add_argument("--jitter", type=float, default=None, help="flow training")
    parser.add_argument("--lr", type=float, default=None, help="default: package")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--figure", default=None, help="PNG path for the Fig. 3 plot")
    parser.add_argument("--save-df", default=None, help="write the flow ensemble here")
    parser.add_argument(
        "--load-df",
        default=None,
        help="use this saved ensemble (fitted to the same --seed) instead of fitting",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_stars, args.n_phi, args.phi_steps = 2**14, 2**13, 500
        args.df_seconds = args.df_seconds or 60.0
    if args.threads:
        torch.set_num_threads(args.threads)

    truth = PlummerTruth()
    x_test, _ = truth.sample(2**14, seed=args.seed + 10_000)
    fit_kwargs = {
        "residual": args.form,
        "activation": args.activation,
        "n_steps": args.phi_steps,
        "seed": args.seed,
        "device": args.device,
        "progress": False,
    }
    if args.lr is not None:
        fit_kwargs["lr"] = args.lr
    if args.radial is not None:
        fit_kwargs["radial"] = args.radial
    result: dict = {
        "config": {**vars(args), "torch_threads": torch.get_num_threads()},
        "machine": platform.platform(),
    }
    sections = args.sections.split(",")
    if "exact" in sections:
        start = time.perf_counter()
        x, v = truth.sample(args.n_phi, seed=args.seed)
        gx, gv = truth.grad_log_f(x, v)
        if args.form == "f":
            f = np.exp(truth.log_f(x, v))[:, None]
            gx, gv = f * gx, f * gv
        fit = fit_potential((x, v, gx, gv), **fit_kwargs)
        result["exact"] = _section(fit, truth, x_test, time.perf_counter() - start)
    if "flow" in sections:
        start = time.perf_counter()
        x, v = truth.sample(args.n_stars, seed=args.seed)
        df_kwargs = {
            "seed": args.seed,
            "device": args.device,
            "factorization": args.factorization,
        }
        # Options left unset take the package defaults.
        for keyword, value in (
            ("n_flows", args.n_flows),
            ("time_limit", args.df_seconds),
            ("epochs", args.df_epochs),
            ("hidden_features", args.hidden_features),
            ("jitter", args.jitter),
        ):
            if value is not None:
                df_kwargs[keyword] = value
        if args.load_df:
            df = FlowEnsemble.load(args.load_df, device=args.device)
        else:
            df = fit_distribution_function(np.hstack([x, v]), **df_kwargs)
        if args.save_df:
            df.save(args.save_df)
        df_s = time.perf_counter() - start
        fit = fit_potential(df, n_samples=args.n_phi, **fit_kwargs)
        if not args.no_virial:
            fit = calibrate(fit, x, v)
        result["flow"] = _section(fit, truth, x_test, time.perf_counter() - start)
        result["flow"]["df_fit_s"] = df_s
        result["flow"]["n_flows"] = df.n_flows
        if args.figure:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = plot_comparison(
                    DeepPotential.from_fit(fit), truth.potential(), x_test.T
                )
            fig.savefig(args.figure, dpi=120)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
