"""Score the flow DF against the exact Plummer DF; prints one JSON object."""

from __future__ import annotations

__all__ = ["main", "measure", "step_timing"]

import argparse
import json
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

from gala_deeppotential.df import FlowEnsemble, FlowOptions
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.options import add_option_arguments, parsed_options

# Radial bins for the breakdown of the nabla_v ln f error, in units of b.
RADIAL_BINS = ((0.0, 1.0), (1.0, 3.0), (3.0, 10.0))


def _relative_error(model: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.linalg.norm(model - truth, axis=1) / np.linalg.norm(truth, axis=1)


def measure(
    df: FlowEnsemble,
    truth: PlummerTruth,
    *,
    n_kl: int = 2**14,
    n_grad: int = 2**15,
    seed: int = 1,
) -> dict[str, Any]:
    r"""Score a fitted DF against the analytic one.

    * ``kl_nats``: :math:`\langle \ln f_{\rm true} - \ln f \rangle` over
      ``n_kl`` fresh true-DF points, an estimate of KL(true || model).
    * ``grad_*``: median and 90th percentile of
      :math:`|\nabla \ln f - \nabla \ln f_{\rm true}| / |\nabla \ln f_{\rm true}|`
      over ``n_grad`` fresh true-DF points with r < 3, and the median of the
      :math:`\nabla_v` error in each of :data:`RADIAL_BINS` (over all drawn
      points in the bin).
    """
    rng = np.random.default_rng(seed)
    x, v = truth.sample(n_kl, seed=rng)
    kl = float(np.mean(truth.log_f(x, v) - df.log_prob(x, v).double().numpy()))

    # r < 3 holds 77% of the mass; draw enough to keep n_grad inside it.
    x, v = truth.sample(int(n_grad / 0.7), seed=rng)
    r = np.linalg.norm(x, axis=1)
    t0 = time.perf_counter()
    gx, gv = (g.double().numpy() for g in df.grad_log_prob(x, v))
    grad_s = time.perf_counter() - t0
    tx, tv = truth.grad_log_f(x, v)
    ex, ev = _relative_error(gx, tx), _relative_error(gv, tv)
    inner = np.flatnonzero(r < 3)[:n_grad]
    out = {
        "kl_nats": kl,
        "grad_x_rel_err_median": float(np.median(ex[inner])),
        "grad_x_rel_err_p90": float(np.percentile(ex[inner], 90)),
        "grad_v_rel_err_median": float(np.median(ev[inner])),
        "grad_v_rel_err_p90": float(np.percentile(ev[inner], 90)),
        "n_grad_points": int(inner.size),
        "grad_eval_s_per_2e15": grad_s * 2**15 / len(x),
    }
    for lo, hi in RADIAL_BINS:
        sel = (r >= lo) & (r < hi)
        out[f"grad_v_rel_err_median_r{lo:g}-{hi:g}"] = float(np.median(ev[sel]))
        out[f"grad_x_rel_err_median_r{lo:g}-{hi:g}"] = float(np.median(ex[sel]))
    return out


def step_timing(
    n_flows: list[int], batch_size: int, n_steps: int = 20
) -> dict[str, float]:
    """Seconds per training step (forward, backward, RAdam) for each K."""
    from gala_deeppotential.flows import build_flow

    out = {}
    for k in n_flows:
        flow = build_flow(n_members=k)
        optimizer = torch.optim.RAdam(flow.parameters(), lr=1e-3)
        batch = torch.randn(k, batch_size, 6, generator=torch.Generator())
        for i in range(n_steps + 3):
            if i == 3:  # the first steps allocate
                t0 = time.perf_counter()
            optimizer.zero_grad()
            (-flow.log_prob(batch).mean(dim=1).sum()).backward()
            optimizer.step()
        out[str(k)] = (time.perf_counter() - t0) / n_steps
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fit a DF to a Plummer sample and print its scores as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--epochs", type=int, default=None, help="fit() default")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="fit budget in seconds"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    add_option_arguments(parser.add_argument_group("the flows"), FlowOptions)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--save", default=None, help="write the fitted DF here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2^14 stars, 3 epochs, smaller evaluation: a smoke test (~1 min)",
    )
    parser.add_argument(
        "--step-timing",
        default=None,
        help="comma-separated K values: only time training steps at --batch-size",
    )
    args = parser.parse_args(argv)
    if args.step_timing:
        from gala_deeppotential.runtime import torch_threads

        batch = args.batch_size or 512
        with torch_threads(args.threads):
            seconds = step_timing([int(k) for k in args.step_timing.split(",")], batch)
        result = {
            "seconds_per_step": seconds,
            "batch_size_per_member": batch,
            "torch_threads": torch.get_num_threads()
            if args.threads is None
            else args.threads,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        print(json.dumps(result))
        return result

    fit_options: dict[str, Any] = {
        "seed": args.seed,
        "threads": args.threads,
        "progress": args.progress,
        "time_limit": args.time_limit,
    }
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            fit_options[name] = getattr(args, name)
    n_stars, n_kl, n_grad = args.n_stars, 2**14, 2**15
    if args.quick:
        n_stars, n_kl, n_grad = 2**14, 2**12, 2**12
        fit_options.setdefault("epochs", 3)

    truth = PlummerTruth()
    x, v = truth.sample(n_stars, seed=args.seed + 1000)
    df = FlowEnsemble(parsed_options(args, FlowOptions), device=args.device)
    t0 = time.perf_counter()
    df.fit(np.hstack([x, v]), **fit_options)
    wall = time.perf_counter() - t0
    if args.save:
        df.save(args.save)

    result = {
        "n_flows": df.n_flows,
        "wall_s": wall,
        **measure(df, truth, n_kl=n_kl, n_grad=n_grad, seed=args.seed + 2000),
        "epochs_run": len(df.history["epoch"]),
        "best_epoch": df.history["best_epoch"],
        "val_loss_final": float(np.mean(df.history["val_loss"][-1])),
        "n_stars": n_stars,
        "model": df.config,
        "fit_options": {k: v for k, v in fit_options.items() if k != "progress"},
        "torch_threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
