"""Ways to sharpen a trained flow ensemble's ∇ln f, scored on the Plummer sphere.

Starts from one fitted :class:`~gala_deeppotential.df.FlowEnsemble` (a model
file, or a fresh fit with the package defaults) and prints one JSON object:

* ``combine``: the ensemble's gradients as the package forms them (the
  mixture, ∇ln Σ f_k / K) against the mean and the median of the members'
  ∇ln f_k, and one member alone;
* ``scale_bias``: the median of (∇ln f · ∇ln f_true) / |∇ln f_true|² − 1 for
  positions and velocities, overall and near the centre; a negative value is
  a gradient that is too weak;
* ``finetune``: continue training every member for ``--steps`` steps with an
  objective chosen by ``--objective``:

  - ``nll``: maximum likelihood (the control);
  - ``dsm``: denoising score matching with noise ``--sigma`` in the scaled
    coordinates, plus ``--nll-weight`` times the likelihood;
  - ``ssm``: sliced score matching (one projection, variance-reduced), plus
    ``--nll-weight`` times the likelihood.

All errors are medians of |∇ln f − ∇ln f_true| / |∇ln f_true| at fresh true-DF
points with r < 3 (G = M = b = 1), and for r < 1.

Usage::

    python benchmarks/df_variants.py --model df.pt --objective dsm --sigma 0.1 \\
        --nll-weight 1 --steps 200
"""

from __future__ import annotations

__all__ = ["finetune", "main", "member_gradients", "score"]

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from gala_deeppotential import FlowEnsemble, fit_distribution_function
from gala_deeppotential.mocks import PlummerTruth


def member_gradients(
    df: FlowEnsemble, x: np.ndarray, v: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Each member's ∇ln f_k and its mixture weight at the points.

    Returns
    -------
    grads : :class:`numpy.ndarray`, shape (K, N, 6)
        (∇x ln f_k, ∇v ln f_k) in the data's units.
    weights : :class:`numpy.ndarray`, shape (K, N)
        f_k / Σ f_k, so that Σ_k weights · grads is the mixture's gradient.
    """
    flow, scaler = df.flow, df.standardizer
    y = torch.as_tensor(np.hstack([x, v]), dtype=torch.float32)
    grads, weights = [], []
    for part in torch.split(y, chunk):
        yk = part.expand(len(df), -1, -1).clone().requires_grad_(True)
        lp = flow.log_prob(scaler.transform(yk)) + scaler.log_abs_det_jacobian(yk)
        (g,) = torch.autograd.grad(lp.sum(), yk)
        grads.append(g)
        weights.append(torch.softmax(lp.detach(), dim=0))
    return (
        torch.cat(grads, 1).double().numpy(),
        torch.cat(weights, 1).double().numpy(),
    )


def _blocks(grad: np.ndarray, truth_grad: tuple[np.ndarray, np.ndarray]):
    """(name, model, truth) for the position and the velocity gradients."""
    return (("gx", grad[:, :3], truth_grad[0]), ("gv", grad[:, 3:], truth_grad[1]))


def score(
    grad: np.ndarray, truth_grad: tuple[np.ndarray, np.ndarray], r: np.ndarray
) -> dict[str, float]:
    """Median relative errors of (∇x, ∇v) ln f for r < 3 and r < 1, in per cent."""
    out = {}
    for name, g, t in _blocks(grad, truth_grad):
        err = np.linalg.norm(g - t, axis=1) / np.linalg.norm(t, axis=1)
        out[name] = round(100 * float(np.median(err[r < 3])), 2)
        out[f"{name}_r_lt_1"] = round(100 * float(np.median(err[r < 1])), 2)
    return out


def _scale_bias(grad: np.ndarray, truth_grad, r: np.ndarray) -> dict[str, float]:
    out = {}
    for name, g, t in _blocks(grad, truth_grad):
        ratio = (g * t).sum(1) / (t * t).sum(1) - 1
        out[name] = round(100 * float(np.median(ratio[r < 3])), 2)
        out[f"{name}_r_lt_0.5"] = round(100 * float(np.median(ratio[r < 0.5])), 2)
    return out


def finetune(
    df: FlowEnsemble,
    data: np.ndarray,
    *,
    objective: str,
    steps: int,
    lr: float,
    batch_size: int,
    sigma: float,
    nll_weight: float,
    seed: int,
) -> list[float]:
    """Continue training every member in place; return the objective per step.

    The score-matching terms are taken in the flows' scaled coordinates,
    where the data have unit scale, over all six axes.
    """
    flow, scaler = df.flow, df.standardizer
    s_data = scaler.transform(torch.as_tensor(data, dtype=torch.float32))
    k = len(df)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    trace = []
    for _ in range(steps):
        s = s_data[torch.randint(len(s_data), (k, batch_size), generator=gen)]
        weight = 1.0 if objective == "nll" else nll_weight
        loss = -weight * flow.log_prob(s).mean(dim=1) if weight else 0.0
        if objective == "dsm":
            noise = torch.randn(s.shape, generator=gen)
            noisy = (s + sigma * noise).requires_grad_(True)
            (sc,) = torch.autograd.grad(
                flow.log_prob(noisy).sum(), noisy, create_graph=True
            )
            loss = loss + 0.5 * (sigma * sc + noise).square().sum(-1).mean(1)
        elif objective == "ssm":
            s = s.requires_grad_(True)
            (sc,) = torch.autograd.grad(flow.log_prob(s).sum(), s, create_graph=True)
            proj = torch.randn(s.shape, generator=gen)
            (hvp,) = torch.autograd.grad((sc * proj).sum(), s, create_graph=True)
            fisher = 0.5 * sc.square().sum(-1) + (hvp * proj).sum(-1)
            loss = loss + fisher.mean(1)
        opt.zero_grad()
        loss.sum().backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
        trace.append(float(loss.detach().mean()))
    return trace


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison and print its JSON; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved FlowEnsemble; default: fit one")
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--data-seed", type=int, default=1000)
    parser.add_argument("--objective", choices=["none", "nll", "dsm", "ssm"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--nll-weight", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    truth = PlummerTruth()
    x, v = truth.sample(args.n_stars, seed=args.data_seed)
    data = np.hstack([x, v])
    if args.model:
        df = FlowEnsemble.load(args.model)
    else:
        df = fit_distribution_function(data, seed=args.seed, progress=False)
    x_t, v_t = truth.sample(2**14, seed=77)
    r = np.linalg.norm(x_t, axis=1)
    truth_grad = truth.grad_log_f(x_t, v_t)
    grads, weights = member_gradients(df, x_t, v_t)
    mixture = (weights[..., None] * grads).sum(0)
    result: dict = {
        "config": vars(args),
        "machine": platform.platform(),
        "load_before": os.getloadavg(),
        "n_flows": len(df),
        "combine": {
            "mixture": score(mixture, truth_grad, r),
            "mean": score(grads.mean(0), truth_grad, r),
            "median": score(np.median(grads, axis=0), truth_grad, r),
            "one_member": score(grads[0], truth_grad, r),
        },
        "scale_bias": _scale_bias(mixture, truth_grad, r),
    }
    if args.objective and args.objective != "none":
        start = time.perf_counter()
        trace = finetune(
            df,
            data,
            objective=args.objective,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            sigma=args.sigma,
            nll_weight=args.nll_weight,
            seed=args.seed,
        )
        gx, gv = df.grad_log_prob(x_t, v_t)
        tuned = np.hstack([gx.double().numpy(), gv.double().numpy()])
        result["finetune"] = {
            **score(tuned, truth_grad, r),
            "objective_first_last": [trace[0], trace[-1]],
            "wall_s": time.perf_counter() - start,
        }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
