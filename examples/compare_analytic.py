"""A Hernquist sphere learned from its stars, against gala's analytic potential.

The stars are an isotropic, stationary sample of a Hernquist (1990) sphere of
10^11 Msun with a 5 kpc scale radius, drawn by Eddington inversion with
``eddington_sample``. The whole method then runs in one call,
``gala_deeppotential.fit``, and the learned potential is compared with gala's
``HernquistPotential`` at held-out stars: a table of errors in radial bins of
the scale radius (``comparison.ecsv``), the error profiles (``errors.png``) and
the flows' DF against the Eddington DF in the (r, v) plane (``df.png``).

Unlike the Plummer sphere, the Hernquist sphere has a density cusp,
:math:`\\rho \\propto r^{-1}`, and a steeper :math:`r^{-4}` envelope. Run
(about 5 minutes on two idle cores at the default sizes)::

    .venv/bin/python examples/compare_analytic.py --out compare_analytic
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from gala.potential import HernquistPotential
from gala.units import galactic

from gala_deeppotential import EddingtonDF, compare_potentials, eddington_sample, fit
from gala_deeppotential.compare import plot_distribution_function, plot_error_profiles
from gala_deeppotential.gala_potential import ExtrapolationWarning

MASS, SCALE = 1e11 * u.Msun, 5 * u.kpc
#: Edges of the radial bins of the table, in scale radii.
R_BINS = (0.0, 0.3, 1.0, 3.0, 10.0)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; see the module docstring. Returns the numbers it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--n-phi", type=int, default=2**15, help="points for Φ")
    parser.add_argument("--df-epochs", type=int, default=8)
    parser.add_argument("--phi-steps", type=int, default=2000)
    parser.add_argument("--n-flows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="compare_analytic", help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hernquist = HernquistPotential(m=MASS, c=SCALE, units=galactic)
    start = time.perf_counter()

    stars = eddington_sample(hernquist, None, args.n_stars, seed=args.seed)
    result = fit(
        stars,
        units=galactic,
        n_flows=args.n_flows,
        df_options={"epochs": args.df_epochs},
        potential_options={"n_samples": args.n_phi, "n_steps": args.phi_steps},
        seed=args.seed,
        threads=args.threads,
        progress=False,
    )
    held_out = eddington_sample(hernquist, None, 2**14, seed=10**6)
    truth = EddingtonDF(hernquist)
    x_test = held_out.xyz.T.to_value(u.kpc)
    v_test = held_out.v_xyz.T.to_value(u.kpc / u.Myr)
    # The Kullback-Leibler divergence of the flows from the true DF [nats].
    kl = np.mean(
        truth.log_f(x_test, v_test) - result.df.log_prob(x_test, v_test).numpy()
    )
    a = SCALE.to_value(u.kpc)
    with warnings.catch_warnings():
        # Held-out stars reach beyond the data on purpose.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table, summary = compare_potentials(
            result.potential,
            hernquist,
            held_out.xyz,
            r_bins=np.array(R_BINS) * SCALE,
            r_summary=3 * SCALE,
        )
        profile, _ = compare_potentials(
            result.potential,
            hernquist,
            held_out.xyz,
            r_bins=np.geomspace(0.03, 20, 15) * SCALE,
        )
    table.write(out / "comparison.ecsv", overwrite=True)
    plot_error_profiles(profile).savefig(out / "errors.png", dpi=100)
    plot_distribution_function(
        result.df, truth, r_max=4 * a, v_max=0.3, units=galactic
    ).savefig(out / "df.png", dpi=100)

    numbers = {
        "n_stars": args.n_stars,
        "df_kl_nats": float(kl),
        **{f"{key}_r_lt_3a": summary[key] for key in ("phi", "acc", "a_r_bias", "rho")},
        "acc_by_bin": [float(x) for x in table["acc"]],
        "r_bins_over_a": list(R_BINS),
        "total_wall_s": time.perf_counter() - start,
    }
    (out / "results.json").write_text(json.dumps(numbers, indent=2))
    print(table)
    print(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    main()
