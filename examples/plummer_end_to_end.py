"""The paper's Plummer demonstration, stage by stage through the public API.

Green & Ting (2020) recover the potential of a Plummer sphere from 2^17 stars.
This script does the same in physical units (m = 1e11 Msun, b = 3 kpc, gala's
galactic units), one stage per call:

1. ``plummer_sample``: the mock catalogue, and ``to_phase_space``: plain arrays
   in kpc and kpc/Myr;
2. ``fit_distribution_function``: the flow ensemble, the DF (Fig. 2 compares it
   with the analytic DF in the (r, v) plane);
3. ``fit_potential`` on 2^15 points drawn from the flows, its forces scaled by
   the stars' virial theorem, wrapped as a gala potential by
   ``DeepPotential.from_fit``;
4. ``compare_potentials`` and ``compare_orbits`` against gala's analytic
   ``PlummerPotential`` (Fig. 3, the error profiles and orbit overlays).

It writes ``fig2_df.png``, ``fig3_potential.png``, ``errors.png``,
``orbits.png``, ``comparison.ecsv`` and ``results.json`` to ``--out`` and
returns the numbers. The default sizes are the paper's, with the package's
default ensemble (about 10 minutes on two idle cores); ``--n-stars``,
``--n-phi``, ``--n-flows``, ``--df-epochs`` and ``--phi-steps`` reduce them;
``--df-batch-size``, ``--df-lr`` and ``--phi-batch-size`` set the training::

    .venv/bin/python examples/plummer_end_to_end.py --out plummer_end_to_end
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
from gala.units import galactic

from gala_deeppotential import (
    DeepPotential,
    PlummerTruth,
    compare_orbits,
    compare_potentials,
    fit_distribution_function,
    fit_potential,
    plummer_sample,
    to_phase_space,
)
from gala_deeppotential.compare import (
    plot_comparison,
    plot_distribution_function,
    plot_error_profiles,
    plot_orbits,
)
from gala_deeppotential.df import DEFAULT_EPOCHS, DEFAULT_N_FLOWS
from gala_deeppotential.gala_potential import ExtrapolationWarning

MASS, SCALE = 1e11 * u.Msun, 3 * u.kpc


def main(argv: list[str] | None = None) -> dict:
    """Run the example; see the module docstring. Returns the numbers it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--n-phi", type=int, default=2**15, help="points for Φ")
    parser.add_argument("--df-epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--df-batch-size", type=int, default=512)
    parser.add_argument("--df-lr", type=float, default=2e-3, help="flows' peak lr")
    parser.add_argument("--phi-steps", type=int, default=2000)
    parser.add_argument("--phi-batch-size", type=int, default=1024)
    parser.add_argument("--n-flows", type=int, default=DEFAULT_N_FLOWS)
    parser.add_argument("--n-orbits", type=int, default=20)
    parser.add_argument("--orbit-steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="plummer_end_to_end", help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = PlummerTruth(m=MASS, b=SCALE, units=galactic)
    start = time.perf_counter()

    # 1. The catalogue, as plain arrays in kpc and kpc/Myr.
    stars = plummer_sample(
        args.n_stars, m=MASS, b=SCALE, units=galactic, seed=args.seed
    )
    data = to_phase_space(stars, units=galactic)
    # 2. The DF.
    df = fit_distribution_function(
        data.w,
        args.n_flows,
        epochs=args.df_epochs,
        batch_size=args.df_batch_size,
        lr=args.df_lr,
        seed=args.seed,
        threads=args.threads,
        progress=False,
    )
    t_df = time.perf_counter() - start
    # 3. The potential that makes it stationary, as a gala potential.
    fit = fit_potential(
        df,
        stars=(data.w[:, :3], data.w[:, 3:]),
        n_samples=args.n_phi,
        n_steps=args.phi_steps,
        batch_size=args.phi_batch_size,
        seed=args.seed,
        threads=args.threads,
        progress=False,
    )
    pot = DeepPotential.from_fit(fit, units=galactic)

    # 4. Against the truth, at held-out stars.
    held_out = plummer_sample(2**14, m=MASS, b=SCALE, units=galactic, seed=10**6)
    x_test = held_out.xyz.T.to_value(u.kpc)
    v_test = held_out.v_xyz.T.to_value(u.kpc / u.Myr)
    # The Kullback-Leibler divergence of the flows from the true DF [nats].
    kl = float(
        np.mean(truth.log_f(x_test, v_test) - df.log_prob(x_test, v_test).numpy())
    )
    reference = truth.potential()
    dt, w0 = 0.5 * u.Myr, held_out[: args.n_orbits]
    with warnings.catch_warnings():
        # Held-out stars and orbits reach beyond the data on purpose.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table, summary = compare_potentials(
            pot,
            reference,
            held_out.xyz,
            r_bins=[0, 3, 9, 30] * u.kpc,
            r_summary=9 * u.kpc,
        )
        profile, _ = compare_potentials(
            pot, reference, held_out.xyz, r_bins=np.geomspace(0.15, 30, 14) * u.kpc
        )
        orbits = compare_orbits(pot, reference, w0, dt=dt, n_steps=args.orbit_steps)
        figures = {
            "fig2_df": plot_distribution_function(
                df, truth, r_max=9, v_max=0.4, units=galactic
            ),
            "fig3_potential": plot_comparison(pot, reference, held_out.xyz),
            "errors": plot_error_profiles(profile),
            "orbits": plot_orbits(
                *(
                    p.integrate_orbit(w0[:3], dt=dt, n_steps=args.orbit_steps)
                    for p in (pot, reference)
                )
            ),
        }
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=100)
    table.write(out / "comparison.ecsv", overwrite=True)

    result = {
        "n_stars": args.n_stars,
        "n_flows": df.n_flows,
        "df_kl_nats": kl,
        **{f"{key}_r_lt_3b": summary[key] for key in ("phi", "acc", "a_r_bias", "rho")},
        **{
            f"orbit_median_{key}": float(np.nanmedian(orbits[f"{key}_rel_diff"]))
            for key in ("pericenter", "apocenter", "period")
        },
        "orbit_median_energy_drift": float(np.median(orbits["energy_drift"])),
        "df_wall_s": t_df,
        "total_wall_s": time.perf_counter() - start,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
