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

__all__ = ["main", "orbit_agreement"]

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

import gala_deeppotential
from gala_deeppotential.fit import fit_potential
from gala_deeppotential.gala_potential import DeepPotential, ExtrapolationWarning
from gala_deeppotential.mocks import PlummerTruth

#: The dynamical time of the example, the circular period at the half-mass
#: radius of the Plummer sphere (about 100 Myr for m = 1e11 Msun, b = 3 kpc).
N_DYNAMICAL_TIMES = 20


def dynamical_time(truth: PlummerTruth) -> float:
    """Circular period at the half-mass radius, :math:`2\\pi r_h / v_c(r_h)`."""
    r_half = truth.b / np.sqrt(2 ** (2 / 3) - 1)
    v_circ = np.sqrt(truth.G * truth.mass_enclosed(r_half) / r_half)
    return float(2 * np.pi * r_half / v_circ)


def orbit_agreement(learned, reference, w0: np.ndarray, dt: float, n_steps: int):
    """Integrate ``w0`` in both potentials; relative differences per orbit.

    Parameters
    ----------
    learned, reference : :class:`~gala.potential.PotentialBase`
    w0 : :class:`numpy.ndarray`, shape ``(6, N)``
        Initial conditions in the potentials' units.
    dt : float
        Leapfrog time step, in the potentials' time unit.
    n_steps : int
        Number of steps.

    Returns
    -------
    rel : dict of str to :class:`numpy.ndarray`
        ``pericenter``, ``apocenter`` and ``period`` (radial, peak to peak):
        :math:`|x_{\\rm learned}/x_{\\rm reference} - 1|` per orbit, NaN where
        an orbit completes too few radial periods to measure one.
    orbits : tuple of :class:`~gala.dynamics.Orbit`
        The learned and the reference orbits.
    """
    orbits = tuple(
        p.integrate_orbit(w0, dt=dt, n_steps=n_steps) for p in (learned, reference)
    )
    measures = {
        "pericenter": lambda o: o.pericenter(),
        "apocenter": lambda o: o.apocenter(),
        "period": lambda o: o.spherical.estimate_period()["distance"],
    }
    rel = {}
    for name, measure in measures.items():
        ratio = (measure(orbits[0]) / measure(orbits[1])).decompose().value
        rel[name] = np.abs(ratio - 1)
    return rel, orbits


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
        deep = gp.load(args.model, module=gala_deeppotential)
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
    with warnings.catch_warnings():
        # A few DF orbits have apocentres beyond the data; they are kept.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        # gala averages an empty list of extrema for orbits too short to have one.
        warnings.simplefilter("ignore", RuntimeWarning)
        rel, (o_deep, o_c) = orbit_agreement(
            deep, truth.potential(), np.concatenate([x0.T, v0.T]), dt, n_steps
        )
    result = {
        "n_orbits": args.n_orbits,
        "dynamical_time_myr": t_dyn,
        "integration_time_myr": n_steps * dt,
        "dt_myr": dt,
        **{f"median_rel_diff_{k}": float(np.nanmedian(r)) for k, r in rel.items()},
        **{f"p90_rel_diff_{k}": float(np.nanpercentile(r, 90)) for k, r in rel.items()},
        "orbits_without_period": int(np.isnan(rel["period"]).sum()),
        "model": args.model
        or f"fit_potential: {args.fit_steps} steps, {args.n_points} points",
    }
    _plot(o_deep, o_c, rel, Path(args.out))
    print(json.dumps(result, indent=2))
    return result


def _plot(o_deep, o_c, rel: dict, out: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), layout="constrained")
    apo = np.nan_to_num(o_c.apocenter().to_value(u.kpc), nan=np.inf)
    picks = np.argsort(apo)[[10, 40, 70]]
    for ax, k in zip(axes[0], picks, strict=True):
        for orbit, style, label in (
            (o_c, "-", "gala C Plummer"),
            (o_deep, "--", "DeepPotential"),
        ):
            xyz = orbit.xyz[:, :, k].to_value(u.kpc)
            ax.plot(xyz[0], xyz[1], style, lw=0.6, label=label)
        ax.set(xlabel="x [kpc]", ylabel="y [kpc]", aspect="equal")
        ax.set_title(f"orbit {k}: apocentre {apo[k]:.1f} kpc")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    for ax, (name, r) in zip(axes[1], rel.items(), strict=True):
        r = r[np.isfinite(r)]
        ax.hist(np.log10(np.clip(r, 1e-7, None)), bins=30)
        ax.axvline(
            np.log10(np.median(r)), color="k", label=f"median {np.median(r):.2%}"
        )
        ax.axvline(-2, color="r", ls=":", label="1% target")
        ax.set(xlabel=f"log10 |relative difference| of {name}", ylabel="orbits")
        ax.legend(fontsize=8)
    fig.suptitle(
        "100 Plummer DF orbits, 20 dynamical times: DeepPotential vs gala's C Plummer"
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
