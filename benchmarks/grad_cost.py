r"""Cost of :math:`\nabla \ln f` from a flow ensemble at 10^6 points.

Times, in one run and at the same points, ``FlowEnsemble.grad_log_prob`` (the
Φ fit's input), ``FlowEnsemble.log_prob`` alone (the baseline: the gradient
adds one backward pass) and the analytic ``PlummerTruth.grad_log_f``; prints
one JSON object with the seconds, the ratios and the points per second. The
ensemble is fitted for one epoch first: its weights do not change the cost.

Usage::

    python benchmarks/grad_cost.py --threads 1
    python benchmarks/grad_cost.py --quick     # 10^5 points
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from machine import describe

from gala_deeppotential.df import FlowEnsemble
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.runtime import torch_threads


def _seconds(fn, repeats: int) -> float:
    """Best wall-clock seconds of ``repeats`` calls of ``fn``."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=10**6)
    parser.add_argument("--n-flows", type=int, default=FlowEnsemble().n_flows)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="10^5 points")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_points = 10**5
    load_before = os.getloadavg()
    truth = PlummerTruth()
    with torch_threads(args.threads):
        stars_x, stars_v = truth.sample(2**13, seed=0)
        df = FlowEnsemble(n_flows=args.n_flows, device=args.device).fit(
            np.hstack([stars_x, stars_v]), epochs=1, seed=0
        )
        x, v = truth.sample(args.n_points, seed=1)
        seconds = {
            "grad_log_prob": _seconds(lambda: df.grad_log_prob(x, v), args.repeats),
            "log_prob": _seconds(lambda: df.log_prob(x, v), args.repeats),
            "analytic_grad_log_f": _seconds(
                lambda: truth.grad_log_f(x, v), args.repeats
            ),
        }
    result = {
        "seconds": seconds,
        "ratio_grad_vs_log_prob": seconds["grad_log_prob"] / seconds["log_prob"],
        "ratio_grad_vs_analytic": seconds["grad_log_prob"]
        / seconds["analytic_grad_log_f"],
        "grad_points_per_s": args.n_points / seconds["grad_log_prob"],
        "grad_member_points_per_s": args.n_points
        * args.n_flows
        / seconds["grad_log_prob"],
        "setup": {
            "n_points": args.n_points,
            "n_flows": args.n_flows,
            "model": df.config,
            "device": str(df.device),
            "repeats": args.repeats,
            "torch_threads": args.threads,
            **describe(load_before),
        },
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
