"""Orbit speed of ``DeepPotential`` and its C-speed exports against gala's C potentials.

Integrates the same 1000 orbits (drawn from the Plummer DF, m = 1e11 Msun,
b = 3 kpc) for 1000 Leapfrog steps in gala's C ``PlummerPotential``, in a
``DeepPotential`` trained on the exact Plummer gradients, and in its spline
and SCF exports; and 1000 disc orbits in its axisymmetric R-z spline export
against gala's C ``MiyamotoNagaiPotential`` (m = 1e11 Msun, a = 3 kpc,
b = 0.3 kpc) and the same spline tabulated from that disc (the floor of any
such export). All in one run; it prints one JSON object: the ratios to the C
potentials, the raw seconds (best of ``--repeats``), and the accuracy of
each export against the ``DeepPotential`` it came from.

Run from the repository root::

    .venv/bin/python benchmarks/orbits.py            # fits a quick model first
    .venv/bin/python benchmarks/orbits.py --model plummer.yml
    .venv/bin/python benchmarks/orbits.py --quick    # reduced sizes, ~1 minute
"""

from __future__ import annotations

__all__ = ["export_accuracy", "main", "time_orbits"]

import argparse
import json
import os
import time
import warnings

import astropy.units as u
import gala.integrate as gi
import gala.potential as gp
import numpy as np
import torch
from gala.potential.scf import SCFPotential
from gala.units import galactic
from machine import describe

from gala_deeppotential.cylspline import MultipoleCylSplinePotential
from gala_deeppotential.gala_potential import DeepPotential, ExtrapolationWarning
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.potential import fit_potential


def time_orbits(
    potential: gp.PotentialBase, w0: np.ndarray, n_steps: int, repeats: int
) -> float:
    """Best wall-clock seconds of ``repeats`` Leapfrog integrations of ``w0``."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        potential.integrate_orbit(
            w0, dt=0.5 * u.Myr, n_steps=n_steps, Integrator=gi.LeapfrogIntegrator
        )
        best = min(best, time.perf_counter() - start)
    return best


def export_accuracy(
    export: gp.PotentialBase, deep: DeepPotential, x: np.ndarray
) -> dict[str, float]:
    """Force and energy differences of an export from its ``DeepPotential``.

    Parameters
    ----------
    export, deep : :class:`~gala.potential.PotentialBase`
    x : :class:`numpy.ndarray`, shape ``(3, N)``
        Positions in the potentials' units.

    Returns
    -------
    accuracy : dict
        Median, 90th and 99th percentiles of the relative force error
        :math:`|\\nabla\\Phi_e - \\nabla\\Phi_d| / |\\nabla\\Phi_d|`; the energy
        offset (median of :math:`\\Phi_e - \\Phi_d`, a gauge constant) and the
        90th percentile of the remaining energy difference relative to
        :math:`|\\Phi_d|`.
    """
    g_e = export.gradient(x).value
    g_d = deep.gradient(x).value
    force = np.linalg.norm(g_e - g_d, axis=0) / np.linalg.norm(g_d, axis=0)
    phi_e = export.energy(x).value
    phi_d = deep.energy(x).value
    offset = float(np.median(phi_e - phi_d))
    energy = np.abs(phi_e - phi_d - offset) / np.abs(phi_d)
    return {
        "force_rel_err_median": float(np.median(force)),
        "force_rel_err_p90": float(np.percentile(force, 90)),
        "force_rel_err_p99": float(np.percentile(force, 99)),
        "energy_offset": offset,
        "energy_rel_err_p90": float(np.percentile(energy, 90)),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved DeepPotential YAML; default: fit")
    parser.add_argument("--fit-steps", type=int, default=300)
    parser.add_argument("--n-orbits", type=int, default=1000)
    parser.add_argument("--n-steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nmax", type=int, default=8)
    parser.add_argument("--lmax", type=int, default=0)
    parser.add_argument("--n-knots", type=int, default=None, help="default: package")
    parser.add_argument(
        "--quick", action="store_true", help="100 orbits, 200 steps, 1 repeat"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_orbits, args.n_steps, args.repeats = 100, 200, 1

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    truth = PlummerTruth(m=1e11 * u.Msun, b=3 * u.kpc, units=galactic)
    fit_seconds = None
    if args.model:
        deep = gp.load(args.model)
    else:
        x, v = truth.sample(2**14, seed=1)
        start = time.perf_counter()
        fit = fit_potential(
            (x, v, *truth.grad_log_f(x, v)),
            n_steps=args.fit_steps,
            seed=0,
            progress=False,
            threads=args.threads,
        )
        fit_seconds = time.perf_counter() - start
        deep = DeepPotential.from_fit(fit, units=galactic)
    deep = deep.replicate(n_threads=args.threads)
    deep32 = deep.replicate(n_threads=args.threads, dtype="float32")

    start = time.perf_counter()
    knots = {} if args.n_knots is None else {"n_knots": args.n_knots}
    keep_gauge = True
    try:
        spline = deep.to_spherical_spline(**knots)
    except ValueError:
        # A briefly trained network's angle-averaged Φ can reach zero before
        # data_radius, where its constant would make the Keplerian tail repel;
        # matching forces at r_max instead changes only that constant.
        keep_gauge = False
        spline = deep.to_spherical_spline(keep_gauge=False, **knots)
    spline_build = time.perf_counter() - start
    start = time.perf_counter()
    scf = deep.to_scf(nmax=args.nmax, lmax=args.lmax)
    scf_build = time.perf_counter() - start
    start = time.perf_counter()
    cylspline = deep.to_cylspline(axisymmetry_tolerance=1.0)
    cylspline_build = time.perf_counter() - start
    c_disc = gp.MiyamotoNagaiPotential(
        m=1e11 * u.Msun, a=3 * u.kpc, b=0.3 * u.kpc, units=galactic
    )
    grid = cylspline.parameters["grid_R"]
    disc_floor = MultipoleCylSplinePotential.from_potential(c_disc, grid, grid)

    x, v = truth.sample(args.n_orbits, seed=7)
    w0 = np.concatenate([x.T, v.T])
    w0_disc = _disc_orbits(c_disc, args.n_orbits)
    c_plummer = truth.potential()
    with warnings.catch_warnings():
        # A few DF orbits reach beyond the data; that does not change the cost.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        seconds = {
            "c": time_orbits(c_plummer, w0, args.n_steps, args.repeats),
            "deep": time_orbits(deep, w0, args.n_steps, args.repeats),
            "deep_float32": time_orbits(deep32, w0, args.n_steps, args.repeats),
            "spline": time_orbits(spline, w0, args.n_steps, args.repeats),
            "scf": time_orbits(scf, w0, args.n_steps, args.repeats),
            # The floor of gala's C SCF: one non-zero coefficient, same r_s.
            "scf_one_term": time_orbits(
                SCFPotential(
                    m=scf.parameters["m"],
                    r_s=scf.parameters["r_s"],
                    Snlm=np.ones((1, 1, 1)),
                    Tnlm=np.zeros((1, 1, 1)),
                    units=scf.units,
                ),
                w0,
                args.n_steps,
                args.repeats,
            ),
            "c_disc": time_orbits(c_disc, w0_disc, args.n_steps, args.repeats),
            "cylspline": time_orbits(cylspline, w0_disc, args.n_steps, args.repeats),
            "cylspline_floor": time_orbits(
                disc_floor, w0_disc, args.n_steps, args.repeats
            ),
        }

    radius = float(deep.parameters["data_radius"].value)
    x_test, _ = truth.sample(20_000, seed=11)
    x_test = x_test[np.linalg.norm(x_test, axis=1) < radius].T
    result = {
        "ratio_deep_vs_c": seconds["deep"] / seconds["c"],
        "ratio_deep_float32_vs_c": seconds["deep_float32"] / seconds["c"],
        "ratio_spline_vs_c": seconds["spline"] / seconds["c"],
        "ratio_scf_vs_c": seconds["scf"] / seconds["c"],
        "ratio_scf_one_term_vs_c": seconds["scf_one_term"] / seconds["c"],
        "ratio_cylspline_vs_c": seconds["cylspline"] / seconds["c_disc"],
        "ratio_cylspline_floor_vs_c": seconds["cylspline_floor"] / seconds["c_disc"],
        "seconds": seconds,
        "seconds_build": {
            "spline": spline_build,
            "scf": scf_build,
            "cylspline": cylspline_build,
        },
        "accuracy_vs_deep": {
            "spline": export_accuracy(spline, deep, x_test),
            "scf": export_accuracy(scf, deep, x_test),
            "cylspline": export_accuracy(cylspline, deep, x_test),
        },
        "accuracy_unit": {"energy_offset": str(deep.units["specific energy"])},
        "setup": {
            "n_orbits": args.n_orbits,
            "n_steps": args.n_steps,
            "dt": "0.5 Myr",
            "integrator": "Leapfrog, save_all=True (gala's default)",
            "repeats": args.repeats,
            "torch_threads": args.threads,
            "net": deep.net.config,
            "model": args.model or f"fit_potential: {args.fit_steps} steps, 2^14 pts",
            "fit_seconds": fit_seconds,
            "spline": {
                "n_knots": len(spline.parameters["r_knots"]),
                "keep_gauge": keep_gauge,
            },
            "scf": {"nmax": args.nmax, "lmax": args.lmax},
            "cylspline": {"grid": [len(grid), len(cylspline.parameters["grid_z"])]},
            "disc_orbits": "near-circular, R in 2-15 kpc, c_disc's v_circ",
            "data_radius_kpc": radius,
            **describe(load_before),
        },
    }
    print(json.dumps(result, indent=2))
    return result


def _disc_orbits(disc: gp.PotentialBase, n: int) -> np.ndarray:
    """``n`` warm disc orbits: R in 2-15 kpc, 10% velocity kicks, |z| < 0.3 kpc."""
    rng = np.random.default_rng(3)
    R = rng.uniform(2, 15, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(-0.3, 0.3, n)
    pos = np.stack([R * np.cos(phi), R * np.sin(phi), z])
    v_c = disc.circular_velocity(pos * u.kpc).to_value(u.kpc / u.Myr)
    vel = np.stack([-v_c * np.sin(phi), v_c * np.cos(phi), np.zeros(n)])
    vel += 0.1 * v_c * rng.standard_normal((3, n))
    return np.concatenate([pos, vel])


if __name__ == "__main__":
    main()
