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
(about 10 minutes on two idle cores at the default sizes, with the package's
default ensemble; ``--n-flows 8 --df-epochs 8`` takes half that)::

    .venv/bin/python examples/compare_analytic.py --out compare_analytic

With ``--exact-gradients`` no flows are fitted: Φ is fitted with
``fit_potential`` to the Eddington DF's exact gradients of ln f
(``EddingtonDF.grad_log_f``) at ``--n-phi`` stars, which isolates the Φ fit,
``DeepPotential`` and the comparison from the DF's errors. ``--r-max`` truncates
the tracer (and so the data) at that many scale radii instead of the default
:math:`10^4`.
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

from gala_deeppotential import (
    DeepPotential,
    EddingtonDF,
    compare_potentials,
    fit,
    fit_potential,
)
from gala_deeppotential.compare import plot_distribution_function, plot_error_profiles
from gala_deeppotential.df import DEFAULT_N_FLOWS
from gala_deeppotential.gala_potential import ExtrapolationWarning
from gala_deeppotential.training import DEFAULT_EPOCHS

MASS, SCALE = 1e11 * u.Msun, 5 * u.kpc
#: Edges of the radial bins of the table, in scale radii.
R_BINS = (0.0, 0.3, 1.0, 3.0, 10.0)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; see the module docstring. Returns the numbers it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--n-phi", type=int, default=2**15, help="points for Φ")
    parser.add_argument("--df-epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--phi-steps", type=int, default=2000)
    parser.add_argument("--phi-batch-size", type=int, default=1024)
    parser.add_argument("--n-flows", type=int, default=DEFAULT_N_FLOWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--exact-gradients",
        action="store_true",
        help="fit Φ to the exact Eddington gradients at --n-phi stars, no flows",
    )
    parser.add_argument(
        "--r-max", type=float, help="truncate the tracer here [scale radii]"
    )
    parser.add_argument(
        "--radial",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the Φ network the radius as an input, to follow the cusp "
        "(default; --no-radial for the paper's network of x alone)",
    )
    parser.add_argument("--out", default="compare_analytic", help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hernquist = HernquistPotential(m=MASS, c=SCALE, units=galactic)
    a = SCALE.to_value(u.kpc)
    # The default r_range of EddingtonDF is (1e-4, 1e4) a for a Hernquist sphere.
    r_range = None if args.r_max is None else (1e-4 * a, args.r_max * a)
    truth = EddingtonDF(hernquist, r_range=r_range)
    start = time.perf_counter()

    phi_options = {
        "n_steps": args.phi_steps,
        "batch_size": args.phi_batch_size,
        "radial": args.radial,
    }
    if args.exact_gradients:
        x, v = truth.sample(args.n_phi, seed=args.seed)
        phi_fit = fit_potential(
            (x, v, *truth.grad_log_f(x, v)),
            **phi_options,
            seed=args.seed,
            threads=args.threads,
            progress=False,
        )
        potential, df = DeepPotential.from_fit(phi_fit, units=galactic), None
    else:
        result = fit(
            truth.to_phase_space_position(*truth.sample(args.n_stars, seed=args.seed)),
            units=galactic,
            df_options={"n_flows": args.n_flows, "epochs": args.df_epochs},
            potential_options={"n_samples": args.n_phi, **phi_options},
            seed=args.seed,
            threads=args.threads,
            progress=False,
        )
        potential, df = result.potential, result.df
        potential.save(out / "potential.yml")
    x_test, v_test = truth.sample(2**14, seed=10**6)
    held_out = truth.to_phase_space_position(x_test, v_test)
    with warnings.catch_warnings():
        # Held-out stars reach beyond the data on purpose.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table, summary = compare_potentials(
            potential,
            hernquist,
            held_out.xyz,
            r_bins=np.array(R_BINS) * SCALE,
            r_summary=3 * SCALE,
        )
        profile, _ = compare_potentials(
            potential,
            hernquist,
            held_out.xyz,
            r_bins=np.geomspace(0.03, 20, 15) * SCALE,
        )
    table.write(out / "comparison.ecsv", overwrite=True)
    profile.write(out / "profile.ecsv", overwrite=True)
    plot_error_profiles(profile).savefig(out / "errors.png", dpi=100)

    numbers = {
        "mode": "exact_gradients" if df is None else "flows",
        "n_stars": args.n_phi if df is None else args.n_stars,
        "r_max_over_a": float(truth.r_grid[-1] / a),
        **{f"{key}_r_lt_3a": summary[key] for key in ("phi", "acc", "a_r_bias", "rho")},
        "acc_by_bin": [float(x) for x in table["acc"]],
        "a_r_bias_by_bin": [float(x) for x in table["a_r_bias"]],
        "r_bins_over_a": list(R_BINS),
    }
    if df is not None:
        numbers["virial"] = result.potential_fit.virial
        # The Kullback-Leibler divergence of the flows from the true DF [nats].
        numbers["df_kl_nats"] = float(
            np.mean(truth.log_f(x_test, v_test) - df.log_prob(x_test, v_test).numpy())
        )
        plot_distribution_function(
            df, truth, r_max=4 * a, v_max=0.3, units=galactic
        ).savefig(out / "df.png", dpi=100)
    numbers["total_wall_s"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(numbers, indent=2))
    print(table)
    print(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    main()
