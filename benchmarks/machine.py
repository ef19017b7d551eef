"""What the benchmarks share: their --quick sizes, the default pipeline on a
truth's stars, and what they record about the machine and the moment they ran."""

from __future__ import annotations

__all__ = [
    "QUICK",
    "begin",
    "cached",
    "describe",
    "finish",
    "fit_stars",
    "median_over_runs",
    "quick_options",
]

import json
import os
import platform
import subprocess
import time
import warnings

import numpy as np
import torch
from gala.units import galactic

from gala_deeppotential.pipeline import fit
from gala_deeppotential.result import FitResult

#: Reduced sizes for a benchmark's ``--quick`` smoke run: stars, flow and Φ
#: options (a few minutes for a whole pipeline on 2 cores).
QUICK = {
    "n_stars": 2**13,
    "df_options": {"n_flows": 4, "epochs": 2},
    "potential_options": {"n_samples": 2**12, "n_steps": 200},
}


def begin(threads: int | None) -> tuple[float, float, float]:
    """Set torch's threads (if given) and return the load average before the run."""
    load_before = os.getloadavg()
    if threads:
        torch.set_num_threads(threads)
    return load_before


def quick_options(quick: bool, n_stars: int) -> tuple[int, dict, dict]:
    """``(n_stars, df_options, potential_options)``: :data:`QUICK` or the defaults."""
    if not quick:
        return n_stars, {}, {}
    return (
        QUICK["n_stars"],
        dict(QUICK["df_options"]),
        dict(QUICK["potential_options"]),
    )


def fit_stars(
    truth,
    x: np.ndarray,
    v: np.ndarray,
    *,
    seed: int,
    device: str,
    df_options: dict,
    potential_options: dict,
    checkpoint_dir: str | None,
) -> FitResult:
    """``gala_deeppotential.fit`` on a truth's stars ``x, v`` (galactic units),
    without progress bars and with the dependencies' FutureWarnings hushed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fit(
            truth.to_phase_space_position(x, v),
            units=galactic,
            df_options=df_options,
            potential_options=potential_options,
            seed=seed,
            device=device,
            progress=False,
            checkpoint_dir=checkpoint_dir,
        )


def median_over_runs(runs: list[dict], seeds: list[int], keys=None) -> dict:
    """One section from its runs on several seeds (fresh draws).

    Each figure (``keys``, or every number that all runs hold) is the
    median over the runs; ``seeds`` and the ``runs`` themselves follow.
    """
    if keys is None:
        keys = [
            key
            for key, value in runs[0].items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
    medians = {
        key: float(np.median([run[key] for run in runs if key in run]))
        for key in keys
        if all(key in run for run in runs)
    }
    return {**medians, "seeds": list(seeds), "runs": runs}


def cached(path: str | None, key: dict, compute) -> dict:
    """A section's figures: read from ``path`` if an earlier run wrote them
    there with the same ``key``, else ``compute()`` and written there.

    A long benchmark split over several runs (one per session, say) keeps
    each finished section this way; the file also records when it was
    measured and the load average around it. ``path`` None computes.
    A file written with another ``key`` (other options, stars or seed) is
    refused rather than mixed in.
    """
    if path is None:
        return compute()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as stream:
            stored = json.load(stream)
        if stored["key"] != json.loads(json.dumps(key)):
            raise ValueError(
                f"{path} holds a section measured with {stored['key']}, not "
                f"{key}; give another --save folder or delete the file"
            )
        return stored["section"]
    load_before = os.getloadavg()
    section = compute()
    measured = {**describe(load_before), "commit": _commit()}
    record = {"key": key, "section": section, "measured": measured}
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(record, stream, indent=2, default=_plain)
    return json.loads(json.dumps(section, default=_plain))


def _commit() -> str | None:
    """The git commit of the code that ran, if it is in a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _plain(value):
    """JSON for numpy's scalars and arrays; text for anything else."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def reference_seconds(steps: int = 100, repeats: int = 3) -> float:
    """Wall time of a fixed torch workload: this machine's speed, so that
    walls measured on different machines can be compared.

    An MLP 6 -> 64 -> 64 -> 6 (SiLU) trained by Adam on a batch of 4096
    float32 rows, with torch's threads as set: the fastest of ``repeats``
    runs of ``steps`` steps, after a warm-up.
    """
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 64),
        torch.nn.SiLU(),
        torch.nn.Linear(64, 64),
        torch.nn.SiLU(),
        torch.nn.Linear(64, 6),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = torch.randn(4096, 6, generator=generator)

    def train(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            optimizer.zero_grad()
            (net(batch) - batch).square().mean().backward()
            optimizer.step()
        return time.perf_counter() - start

    train(steps // 5)
    return min(train(steps) for _ in range(repeats))


def describe(load_before: tuple[float, float, float]) -> dict:
    """The load average before (given) and after (now), CPU, the time of
    :func:`reference_seconds` (now), torch and date."""
    return {
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "reference_s": reference_seconds(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def finish(result: dict, load_before: tuple[float, float, float], **setup) -> dict:
    """Add the run's ``setup`` (with torch's threads and the machine) and print.

    ``result`` gets ``setup``: the given fields, ``torch_threads`` and
    :func:`describe`; it is printed as the benchmark's one JSON object and
    returned.
    """
    result["setup"] = {
        **setup,
        "torch_threads": torch.get_num_threads(),
        **describe(load_before),
    }
    print(json.dumps(result, indent=2, default=str))
    return result
