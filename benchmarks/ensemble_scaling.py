"""Cost of the ensemble size K: training-step time per member, against K = 1.

Times full training steps (forward, backward, RAdam) of K batched flows at a
fixed batch per member, for each K, in one run, and prints one JSON object
with the seconds per step, the seconds per member-step and the speed-up per
member over the K = 1 baseline timed in the same run. Uses
``df_quality.step_timing``, so the figures compare with those in
``docs/benchmarks.md``.

Usage::

    python benchmarks/ensemble_scaling.py --threads 1
    python benchmarks/ensemble_scaling.py --quick    # K up to 8, fewer steps
"""

from __future__ import annotations

import argparse
import json
import os

from df_quality import step_timing
from machine import describe

from gala_deeppotential.runtime import torch_threads


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-flows", default="1,2,4,8,16", help="K values")
    parser.add_argument("--batch-size", type=int, default=512, help="per member")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per K")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="K <= 8, 5 steps")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.n_flows.split(",")]
    if args.quick:
        ks, args.steps = [k for k in ks if k <= 8], 5
    if 1 not in ks:
        ks.insert(0, 1)
    load_before = os.getloadavg()
    with torch_threads(args.threads):
        seconds = step_timing(ks, args.batch_size, n_steps=args.steps)
    base = seconds["1"]
    result = {
        "seconds_per_step": seconds,
        "seconds_per_member_step": {k: s / int(k) for k, s in seconds.items()},
        "speedup_per_member_vs_k1": {k: base * int(k) / s for k, s in seconds.items()},
        "setup": {
            "batch_size_per_member": args.batch_size,
            "timed_steps": args.steps,
            "torch_threads": args.threads,
            **describe(load_before),
        },
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
