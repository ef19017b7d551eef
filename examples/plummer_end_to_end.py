"""The paper's Plummer demonstration in physical units, end to end.

Green & Ting (2020) recover the potential of a Plummer sphere from 2^17 stars.
This script does the same for a sphere of m = 1e11 Msun and b = 3 kpc in
gala's galactic units (kpc, Myr, Msun), with the package's defaults, through
:func:`gala_deeppotential.demo.run_plummer_demo`, the function behind
``deep-potential demo`` (which runs the dimensionless sphere):

1. 2^17 stars drawn from the sphere's distribution function;
2. :func:`gala_deeppotential.fit`: the flow ensemble, the potential that makes
   it stationary, its forces calibrated by the stars' virial theorem;
3. the learned potential against gala's analytic ``PlummerPotential`` at
   held-out stars: errors by radius, the paper's Fig. 2 and Fig. 3, and orbits
   in both potentials.

It writes ``metrics.json``, ``comparison.ecsv``, ``potential.yml`` (+ model
file) and the figures ``df.png``, ``potential.png``, ``errors.png`` and
``orbits.png`` to ``--out``, and prints the metrics. The default sizes take
about 12 minutes on two idle cores; ``--n-stars``, ``--n-phi``, ``--n-flows``,
``--df-epochs`` and ``--phi-steps`` reduce them, and ``--df-batch-size``,
``--df-lr`` and ``--phi-batch-size`` set the training::

    .venv/bin/python examples/plummer_end_to_end.py --out plummer_end_to_end
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json

import astropy.units as u
from gala.units import galactic

from gala_deeppotential import DFOptions, PlummerTruth, PotentialOptions
from gala_deeppotential.demo import run_plummer_demo
from gala_deeppotential.training import DEFAULT_EPOCHS

MASS, SCALE = 1e11 * u.Msun, 3 * u.kpc


def main(argv: list[str] | None = None) -> dict:
    """Run the example; see the module docstring. Returns the metrics it prints."""
    df_defaults, phi_defaults = DFOptions(), PotentialOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--n-flows", type=int, default=df_defaults.n_flows)
    parser.add_argument("--df-epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--df-batch-size", type=int, default=df_defaults.batch_size)
    parser.add_argument("--df-lr", type=float, default=df_defaults.lr)
    parser.add_argument("--n-phi", type=int, default=phi_defaults.n_samples)
    parser.add_argument("--phi-steps", type=int, default=phi_defaults.n_steps)
    parser.add_argument("--phi-batch-size", type=int, default=phi_defaults.batch_size)
    parser.add_argument("--n-orbits", type=int, default=20)
    parser.add_argument("--orbit-steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="plummer_end_to_end", help="output folder")
    args = parser.parse_args(argv)
    metrics = run_plummer_demo(
        args.out,
        truth=PlummerTruth(m=MASS, b=SCALE, units=galactic),
        n_stars=args.n_stars,
        df_options={
            "n_flows": args.n_flows,
            "epochs": args.df_epochs,
            "batch_size": args.df_batch_size,
            "lr": args.df_lr,
        },
        potential_options={
            "n_samples": args.n_phi,
            "n_steps": args.phi_steps,
            "batch_size": args.phi_batch_size,
        },
        n_orbits=args.n_orbits,
        orbit_steps=args.orbit_steps,
        seed=args.seed,
        threads=args.threads,
        progress=False,
    )
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
