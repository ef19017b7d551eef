"""Orbits in a learned Plummer potential side by side with gala's analytic one.

Fits a ``DeepPotential`` to the exact Plummer gradients of ln f (m = 1e11 Msun,
b = 3 kpc, galactic units) with ``fit_potential``, draws 100 orbits from the
DF, integrates them for 20 dynamical times in the learned potential and in
gala's C ``PlummerPotential``, and compares pericentre, apocentre and radial
period. Writes a PNG and prints the numbers as JSON.

Run from the repository root (about 2-3 CPU-minutes, most of it the fit)::

    .venv/bin/python examples/compare_orbits.py --out compare_orbits.png
"""

from __future__ import annotations

__all__ = ["dynamical_time", "main"]

import argparse
import json
import warnings
from pathlib import Path

import astropy.units as u
import gala.potential as gp
import matplotlib
import numpy as np
import torch
from gala.units import galactic

from gala_deeppotential.compare import compare_orbits
from gala_deeppotential.gala_potential import DeepPotential, ExtrapolationWarning
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.potential import fit_potential

#: The dynamical time of the example, the circular period at the half-mass
#: radius of the Plummer sphere (about 100 Myr for m = 1e11 Msun, b = 3 kpc).
N_DYNAMICAL_TIMES = 20


def dynamical_time(truth: PlummerTruth) -> float:
    """Circular period at the half-mass radius, :math:`2\\pi r_h / v_c(r_h)`."""
    r_half = truth.b / np.sqrt(2 ** (2 / 3) - 1)
    v_circ = np.sqrt(truth.G * truth.mass_enclosed(r_half) / r_half)
    return float(2 * np.pi * r_half / v_circ)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved DeepPotential YAML; default: fit")
    parser.add_argument("--save-model", help="where to save the fitted model (YAML)")
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--n-points", type=int, default=2**15)
    parser.add_argument("--n-orbits", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="compare_orbits.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    truth = PlummerTruth(m=1e11 * u.Msun, b=3 * u.kpc, units=galactic)
    if args.model:
        deep = gp.load(args.model)
    else:
        x, v = truth.sample(args.n_points, seed=1)
        fit = fit_potential(
            (x, v, *truth.grad_log_f(x, v)),
            n_steps=args.fit_steps,
            seed=0,
            progress=False,
            threads=args.threads,
        )
        deep = DeepPotential.from_fit(fit, units=galactic)
        if args.save_model:
            deep.save(args.save_model)

    t_dyn = dynamical_time(truth)
    dt = 0.5
    n_steps = round(N_DYNAMICAL_TIMES * t_dyn / dt)
    x0, v0 = truth.sample(args.n_orbits, seed=3)
    w0 = truth.to_phase_space_position(x0, v0)
    with warnings.catch_warnings():
        # A few DF orbits have apocentres beyond the data; they are kept.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        # gala averages an empty list of extrema for orbits too short to have one.
        warnings.simplefilter("ignore", RuntimeWarning)
        table = compare_orbits(deep, truth.potential(), w0, dt=dt, n_steps=n_steps)
    rel = {
        k: np.asarray(table[f"{k}_rel_diff"])
        for k in ("pericenter", "apocenter", "period")
    }
    result = {
        "n_orbits": args.n_orbits,
        "dynamical_time_myr": t_dyn,
        "integration_time_myr": n_steps * dt,
        "dt_myr": dt,
        **{f"median_rel_diff_{k}": float(np.nanmedian(r)) for k, r in rel.items()},
        **{f"p90_rel_diff_{k}": float(np.nanpercentile(r, 90)) for k, r in rel.items()},
        "orbits_without_period": int(np.isnan(rel["period"]).sum()),
        "median_energy_drift": float(np.median(table["energy_drift"])),
        "model": args.model
        or f"fit_potential: {args.fit_steps} steps, {args.n_points} points",
    }
    picks = np.argsort(np.nan_to_num(table["apocenter_reference"].value, nan=np.inf))
    picks = picks[[args.n_orbits // 10, args.n_orbits // 2, (7 * args.n_orbits) // 10]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        shown = [
            p.integrate_orbit(w0[picks], dt=dt, n_steps=n_steps)
            for p in (deep, truth.potential())
        ]
    _plot(*shown, picks, rel, Path(args.out))
    print(json.dumps(result, indent=2))
    return result


def _plot(o_deep, o_c, picks, rel: dict, out: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), layout="constrained")
    apo = o_c.apocenter().to_value(u.kpc)
    for j, ax in enumerate(axes[0]):
        for orbit, style, label in (
            (o_c, "-", "gala C Plummer"),
            (o_deep, "--", "DeepPotential"),
        ):
            xyz = orbit.xyz[:, :, j].to_value(u.kpc)
            ax.plot(xyz[0], xyz[1], style, lw=0.6, label=label)
        ax.set(xlabel="x [kpc]", ylabel="y [kpc]", aspect="equal")
        ax.set_title(f"orbit {picks[j]}: apocentre {apo[j]:.1f} kpc")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    for ax, (name, r) in zip(axes[1], rel.items(), strict=True):
        r = r[np.isfinite(r)]
        ax.hist(np.log10(np.clip(r, 1e-7, None)), bins=30)
        ax.axvline(
            np.log10(np.median(r)), color="k", label=f"median {np.median(r):.2%}"
        )
        ax.axvline(-2, color="r", ls=":", label="1% target")
        ax.set(
            xlabel=f"log10 |rel. difference| of {name} (0 drawn at -7)", ylabel="orbits"
        )
        ax.legend(fontsize=8)
    fig.suptitle(
        "100 Plummer DF orbits, 20 dynamical times: DeepPotential vs gala's C Plummer"
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
