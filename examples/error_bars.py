"""Error bars on a fitted disc galaxy: the rotation curve, the density and an orbit.

The catalogue is an exact cold disc (:class:`~gala_deeppotential.mocks.ShuDiscDF`
in :func:`~gala_deeppotential.mocks.disc_galaxy_potential`). The script fits
it with :func:`gala_deeppotential.fit`, then asks
:meth:`FitResult.bands <gala_deeppotential.FitResult.bands>` for the 68%
bands (Φ fitted again to 4 disjoint groups of the 16 flow members), and
draws the circular velocity and the mid-plane density with their bands
against the truth (``error_bars.png``). It integrates a Sun-like orbit in
each group's potential, the spread of its apocentre and height being the
orbit's error bar, and prints a JSON summary.

Run from the repository root (about 35 minutes on 2 cores: the fit and 4
more Φ fits)::

    .venv/bin/python examples/error_bars.py --out error_bars --work runs/bars

``--work`` keeps the fits, so a second run only draws. ``--quick`` runs it
at a reduced size in about a minute.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
from pathlib import Path

import astropy.units as u
import gala.integrate as gi
import matplotlib.pyplot as plt
import numpy as np
from gala.dynamics import PhaseSpacePosition

from gala_deeppotential import fit
from gala_deeppotential.mocks import ShuDiscDF, disc_galaxy_potential


def _plot(bands, truth, R: np.ndarray):
    """The circular velocity and mid-plane density, fitted with bands and true."""
    q = np.stack([R, np.zeros_like(R), np.zeros_like(R)]) * u.kpc
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    panels = (
        (bands.circular_velocity(q), truth.circular_velocity(q), u.km / u.s),
        (bands.density(q), truth.density(q), u.Msun / u.pc**3),
    )
    for ax, (band, true, unit) in zip(axes, panels, strict=True):
        ax.fill_between(
            R,
            band.low.to_value(unit),
            band.high.to_value(unit),
            alpha=0.35,
            label="68% band",
        )
        ax.plot(R, band.value.to_value(unit), label="fitted")
        ax.plot(R, true.to_value(unit), "k--", label="truth")
        ax.set_xlabel("R [kpc]")
    axes[0].set_ylabel("circular velocity [km/s]")
    axes[1].set_ylabel(r"mid-plane density [M$_\odot$ pc$^{-3}$]")
    axes[1].set_yscale("log")
    axes[0].legend()
    return fig


def _orbit_spread(bands, truth) -> dict:
    """A Sun-like orbit in each group's potential: spread of apocentre and height."""
    v_c = truth.circular_velocity([8.0, 0, 0] * u.kpc)[0].to_value(u.km / u.s)
    w0 = PhaseSpacePosition(
        pos=[8.0, 0, 0.02] * u.kpc, vel=[10.0, v_c, 20.0] * u.km / u.s
    )
    kwargs = {"dt": 1 * u.Myr, "n_steps": 2000, "Integrator": gi.LeapfrogIntegrator}
    orbits = bands.integrate_orbits(w0, **kwargs)
    true = truth.integrate_orbit(w0, **kwargs)
    apo = np.array([o.apocenter().to_value(u.kpc) for o in orbits])
    z_max = np.array([o.zmax(approximate=True).to_value(u.kpc) for o in orbits])
    return {
        "apocenter_kpc": [float(apo.mean()), float(apo.std(ddof=1))],
        "apocenter_true_kpc": float(true.apocenter().to_value(u.kpc)),
        "z_max_kpc": [float(z_max.mean()), float(z_max.std(ddof=1))],
        "z_max_true_kpc": float(true.zmax(approximate=True).to_value(u.kpc)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-stars", type=int, default=2**17)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="error_bars", help="output folder")
    parser.add_argument("--work", default=None, help="folder that keeps the fits")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    args = parser.parse_args(argv)
    options: dict = {}
    groups = 4
    if args.quick:
        args.n_stars, groups = 2**13, 2
        options = {
            "df_options": {"n_flows": 4, "epochs": 4},
            "potential_options": {"n_samples": 2048, "n_steps": 200},
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = None if args.work is None else Path(args.work)
    disc = ShuDiscDF(disc_galaxy_potential())
    stars = disc.to_phase_space_position(*disc.sample(args.n_stars, seed=args.seed))
    run = {"threads": args.threads, "progress": False}
    result = fit(
        stars,
        seed=args.seed,
        checkpoint_dir=work and work / "fit",
        **run,
        **options,
    )
    bands = result.bands(groups, checkpoint_dir=work and work / "bands", **run)
    R = np.linspace(1.0, 16.0, 61)
    _plot(bands, disc.potential, R).savefig(out / "error_bars.png", dpi=120)
    q = [8.0, 0, 0] * u.kpc
    v_c = bands.circular_velocity(q)
    summary = {
        "n_stars": args.n_stars,
        "groups": groups,
        "v_c_8kpc_km_s": [
            float(v_c.value.to_value(u.km / u.s)[0]),
            float(v_c.sigma.to_value(u.km / u.s)[0]),
        ],
        "v_c_8kpc_true_km_s": float(
            disc.potential.circular_velocity(q).to_value(u.km / u.s)[0]
        ),
        "orbit": _orbit_spread(bands, disc.potential),
        "wall_s_bands": bands.wall_s,
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
