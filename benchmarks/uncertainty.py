"""Are the error bars calibrated? Coverage of the true forces by the 68% band.

For each truth, fits the default pipeline (``gala_deeppotential.fit``) to
2^17 stars, then ``FitResult.bands()`` (Φ fitted again to disjoint groups of
flow members), and at 2^14 fresh stars of the same truth within the radius
holding 90% of them counts how often the true acceleration lies inside the
68% band. Prints one JSON object with a section per truth:

* ``plummer``: the isotropic Plummer sphere, M = 10^11 Msun, b = 2 kpc;
* ``cold-disc``: :class:`~gala_deeppotential.mocks.ShuDiscDF` in
  :func:`~gala_deeppotential.mocks.disc_galaxy_potential`.

Each section has, per radial bin (equal numbers of test stars):
``coverage_68`` (the fraction of stars whose true ``|a|`` lies in the band of
``|a|``), ``coverage_68_components`` (the same for each Cartesian component,
all three pooled), ``coverage_68_density``, ``k_for_68`` (the
``BAND_SCALE`` that would make the band of ``|a|`` hold 68% of them),
``acc_rel_err_median`` and ``band_rel_width_median`` (``sigma / |a|``); and
``wall_s_fit`` and ``wall_s_bands`` (the cost of the error bars).

With ``--work DIR`` the fits are kept there (checkpoints), so a second run
reuses them and only scores the bands again (e.g. with another ``--scale``).

Usage::

    python benchmarks/uncertainty.py --work runs/unc           # both truths, ~1 hour
    python benchmarks/uncertainty.py --truths plummer --quick  # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings

import astropy.units as u
import numpy as np
from gala.potential import PotentialBase
from gala.units import galactic
from machine import begin, finish, fit_stars, quick_options

from gala_deeppotential.mocks import PlummerTruth, ShuDiscDF, disc_galaxy_potential
from gala_deeppotential.uncertainty import BAND_SCALE, GROUPS

TRUTHS = {
    "plummer": lambda: PlummerTruth(m=1e11 * u.Msun, b=2 * u.kpc, units=galactic),
    "cold-disc": lambda: ShuDiscDF(disc_galaxy_potential()),
}
N_BINS = 5


def _held_out(truth, seed: int) -> np.ndarray:
    """2^14 fresh stars within the radius holding 90% of them."""
    x, _ = truth.sample(2**14, seed=seed + 10_000)
    r = np.linalg.norm(x, axis=1)
    return x[r < np.quantile(r, 0.9)]


def _fraction(inside: np.ndarray) -> float:
    return float(np.mean(inside))


def _score_bin(acc, acc_true, rho, rho_true, k: float) -> dict:
    """Coverage and widths of the bands (of ``BAND_SCALE = k``) at one bin's stars."""
    norm, norm_true = acc.norm(), np.linalg.norm(acc_true, axis=0)
    miss = np.abs(norm_true - norm.value) / (norm.sigma / k)
    return {
        "coverage_68": _fraction(norm.contains(norm_true)),
        "coverage_68_components": _fraction(acc.contains(acc_true)),
        "coverage_68_density": _fraction(rho.contains(rho_true)),
        "k_for_68": float(np.quantile(miss.decompose().value, 0.68)),
        "acc_rel_err_median": float(
            np.median(np.linalg.norm(acc.value - acc_true, axis=0) / norm_true)
        ),
        "band_rel_width_median": float(np.median(norm.sigma / norm_true)),
    }


def _section(truth, bands, x_test: np.ndarray) -> dict:
    """Per radial bin of the test stars: coverage of the true a and rho."""
    r = np.linalg.norm(x_test, axis=1)
    edges = np.quantile(r, np.linspace(0, 1, N_BINS + 1))
    q = x_test.T * u.kpc
    acc = bands.acceleration(q)
    rho = bands.density(q)
    pot = truth.potential
    if not isinstance(pot, PotentialBase):  # PlummerTruth.potential() is a method
        pot = pot()
    acc_true = pot.acceleration(q).to(acc.value.unit)
    rho_true = pot.density(q).to(rho.value.unit)
    bins = []
    for lo, hi in itertools.pairwise(edges):
        pick = (r >= lo) & (r <= hi)
        sub = type(acc)(acc.value[:, pick], acc.members[:, :, pick], acc.scale)
        sub_rho = type(rho)(rho.value[pick], rho.members[:, pick], rho.scale)
        bins.append(
            {
                "r_kpc": [float(lo), float(hi)],
                **_score_bin(
                    sub, acc_true[:, pick], sub_rho, rho_true[pick], bands.scale
                ),
            }
        )
    everything = _score_bin(acc, acc_true, rho, rho_true, bands.scale)
    return {
        "bins": bins,
        "coverage_68": [b["coverage_68"] for b in bins],
        "all": everything,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truths", default="plummer,cold-disc")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--groups", type=int, default=GROUPS)
    parser.add_argument("--scale", type=float, default=BAND_SCALE)
    parser.add_argument("--resample", default="members", choices=["members", "stars"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="folder that keeps the fits")
    args = parser.parse_args(argv)
    load_before = begin(args.threads)
    args.n_stars, df_options, potential_options = quick_options(
        args.quick, args.n_stars
    )
    result: dict = {
        "groups": args.groups,
        "scale": args.scale,
        "resample": args.resample,
    }
    for name in args.truths.split(","):
        truth = TRUTHS[name]()
        work = args.work and os.path.join(args.work, f"{name}_s{args.seed}")
        start = time.perf_counter()
        x, v = truth.sample(args.n_stars, seed=args.seed)
        fitted = fit_stars(
            truth,
            x,
            v,
            seed=args.seed,
            device=args.device,
            df_options=df_options,
            potential_options=potential_options,
            checkpoint_dir=None if work is None else os.path.join(work, "fit"),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            wall_fit = time.perf_counter() - start
            start = time.perf_counter()
            bands = fitted.bands(
                args.groups,
                resample=args.resample,
                device=args.device,
                progress=False,
                checkpoint_dir=work and os.path.join(work, f"bands_{args.resample}"),
            )
            bands.scale = args.scale
            wall_bands = time.perf_counter() - start
            result[name] = {
                **_section(truth, bands, _held_out(truth, args.seed)),
                "wall_s_fit": wall_fit,
                "wall_s_bands": wall_bands,
            }
    return finish(result, load_before, n_stars=args.n_stars, seed=args.seed)


if __name__ == "__main__":
    main()
