"""Accuracy of the fitted potential on exact disc-galaxy truths.

Prints one JSON object with a section per source of DF gradients:

* ``exact``: Φθ fitted on the analytic ∇ln f at points drawn from the truth
  (``fit_potential`` with its defaults): the floor set by the Φ fit alone;
* ``flow``: the whole default pipeline, ``gala_deeppotential.fit`` on the
  stars with its defaults.

The truths (``--truth``):

* ``cold-disc``: :class:`~gala_deeppotential.mocks.ShuDiscDF` with its
  defaults (dispersions 44 km/s at 2 kpc to 18 km/s at 14 kpc) in
  :func:`~gala_deeppotential.mocks.disc_galaxy_potential` (Miyamoto-Nagai
  disc, Hernquist bulge, NFW halo);
* ``hot-mw``: :class:`~gala_deeppotential.mocks.RotatingPolytropeDF` with its
  defaults in gala's ``MilkyWayPotential2022``.

Each section holds :func:`gala_deeppotential.meridional.compare_disc` at 2^14
fresh stars of the same DF within the radius holding 90% of them, and
``wall_s``. ``--figure`` draws the meridional comparison of the last section.

Usage::

    python benchmarks/disc_quality.py                    # both sections, 2^17 stars
    python benchmarks/disc_quality.py --sections exact   # Φ fit only, ~2 minutes
    python benchmarks/disc_quality.py --truth hot-mw --quick
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from machine import finish

from gala_deeppotential.gala_potential import DeepPotential
from gala_deeppotential.meridional import compare_disc
from gala_deeppotential.mocks import (
    RotatingPolytropeDF,
    ShuDiscDF,
    disc_galaxy_potential,
    milky_way_potential,
)
from gala_deeppotential.pipeline import fit
from gala_deeppotential.potential import fit_potential

TRUTHS = {
    "cold-disc": lambda: ShuDiscDF(disc_galaxy_potential()),
    "hot-mw": lambda: RotatingPolytropeDF(milky_way_potential()),
}


def _held_out(truth, seed: int) -> tuple[np.ndarray, float]:
    """2^14 fresh stars within the radius holding 90% of them, and that radius."""
    x, _ = truth.sample(2**14, seed=seed + 10_000)
    r = np.linalg.norm(x, axis=1)
    r90 = float(np.quantile(r, 0.9))
    return x[r < r90], r90


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truth", default="cold-disc", choices=sorted(TRUTHS))
    parser.add_argument("--sections", default="exact,flow")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--figure", default=None, help="PNG of the last section")
    parser.add_argument("--save", default=None, help="YAML of the flow's potential")
    parser.add_argument(
        "--no-rotation",
        action="store_true",
        help="keep the flows from subtracting the stars' rotation curve",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    potential_options: dict = {}
    df_options: dict = {}
    if args.quick:
        args.n_stars = 2**14
        potential_options = {"n_samples": 2**13, "n_steps": 500}
        df_options = {"time_limit": 60.0}
    if args.no_rotation:
        df_options["rotation"] = False

    truth = TRUTHS[args.truth]()
    x_test, r90 = _held_out(truth, args.seed)
    result: dict = {"truth": args.truth, "r90": r90, "n_test": len(x_test)}
    pot = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if "exact" in args.sections.split(","):
            start = time.perf_counter()
            n = potential_options.get("n_samples", 2**15)
            x, v = truth.sample(n, seed=args.seed)
            phi_fit = fit_potential(
                (x, v, *truth.grad_log_f(x, v)),
                **{k: val for k, val in potential_options.items() if k != "n_samples"},
                seed=args.seed,
                device=args.device,
                progress=False,
            )
            pot = DeepPotential.from_fit(phi_fit, units=truth.units)
            result["exact"] = {
                **compare_disc(pot, truth.potential, x_test.T),
                "wall_s": time.perf_counter() - start,
            }
        if "flow" in args.sections.split(","):
            start = time.perf_counter()
            x, v = truth.sample(args.n_stars, seed=args.seed)
            fitted = fit(
                truth.to_phase_space_position(x, v),
                units=truth.units,
                df_options=df_options,
                potential_options=potential_options,
                seed=args.seed,
                device=args.device,
                progress=False,
            )
            pot = fitted.potential
            result["flow"] = {
                **compare_disc(pot, truth.potential, x_test.T),
                "wall_s": time.perf_counter() - start,
                "report": fitted.report(),
            }
            if args.save:
                pot.save(args.save)
    if args.figure and pot is not None:
        from gala_deeppotential.meridional import plot_disc_comparison

        fig = plot_disc_comparison(pot, truth.potential, x_test.T)
        fig.savefig(args.figure, dpi=120)
    return finish(result, load_before, n_stars=args.n_stars, seed=args.seed)


if __name__ == "__main__":
    main()
