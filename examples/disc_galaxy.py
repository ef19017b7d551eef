"""A disc galaxy: a catalogue in, a potential out, its rotation curve and orbits.

The galaxy is a Miyamoto-Nagai disc, a Hernquist bulge and an NFW halo
(:func:`~gala_deeppotential.mocks.disc_galaxy_potential`); the catalogue is
2^17 stars of an exact cold rotating disc in it
(:class:`~gala_deeppotential.mocks.ShuDiscDF`: dispersions of 18-44 km/s,
median height 0.2 kpc), observed from the Sun as an ICRS ``SkyCoord`` with
every star and no errors. The stars trace the disc only; the bulge and the
dark halo are felt, not seen.

:func:`gala_deeppotential.fit` recovers the potential with its defaults (it
notices that the stars rotate, see ``docs/discs.md``). The script then

1. scores it against the truth at fresh stars
   (:func:`~gala_deeppotential.meridional.compare_disc`) and draws the
   meridional maps, the rotation curve and :math:`K_z` at 8 kpc
   (``disc_comparison.png``);
2. exports it to gala's C-speed R-z spline (``to_cylspline``, the learned Φ
   averaged over azimuth) and scores the export against the network and the
   truth;
3. integrates 20 disc orbits for 2 Gyr in the learned potential, in the
   export and in the truth, and compares them (``disc_orbits.png``).

It prints the numbers as JSON and saves the potential. Run from the
repository root (about 15 minutes on 2 cores)::

    .venv/bin/python examples/disc_galaxy.py --out disc_galaxy

``--model potential.yml`` skips the fit and studies a saved potential of this
galaxy, such as the one ``benchmarks/disc_quality.py --save`` writes.

``--quick`` runs every step at a reduced size in about a minute; its
potential is far from the truth.
"""

from __future__ import annotations

__all__ = ["main", "observe_disc"]

import argparse
import json
import warnings
from pathlib import Path

import astropy.units as u
import gala.potential as gp
import numpy as np
from astropy.coordinates import SkyCoord

from gala_deeppotential import ExtrapolationWarning, fit
from gala_deeppotential.compare import compare_orbits, plot_orbits
from gala_deeppotential.export import NonAxisymmetryWarning
from gala_deeppotential.meridional import compare_disc, plot_disc_comparison
from gala_deeppotential.mocks import ShuDiscDF, disc_galaxy_potential
from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME

#: Sizes of the full run (the package's defaults) and the quick one.
SIZES = {
    "full": {"n_stars": 2**17, "orbit_time": 2 * u.Gyr, "fit": {}},
    "quick": {
        "n_stars": 2**12,
        "orbit_time": 0.3 * u.Gyr,
        "fit": {
            "df_options": {"n_flows": 2, "epochs": 4, "batch_size": 256},
            "potential_options": {"n_samples": 1024, "n_steps": 200},
        },
    },
}
N_ORBITS = 20
ORBIT_STEP = 1 * u.Myr


def observe_disc(disc: ShuDiscDF, n_stars: int, seed: int) -> SkyCoord:
    """A mock survey of the whole disc: its stars as seen from the Sun, in ICRS."""
    w = disc.to_phase_space_position(*disc.sample(n_stars, seed=seed))
    galactocentric = SkyCoord(
        w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME
    )
    return galactocentric.icrs


def main(argv: list[str] | None = None) -> dict:
    """Run the example; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced smoke run")
    parser.add_argument(
        "--model", help="a saved DeepPotential YAML of this galaxy; default: fit"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="disc_galaxy", help="output folder")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    truth = disc_galaxy_potential()
    disc = ShuDiscDF(truth)
    summary: dict = {}
    if args.model:
        learned = gp.load(args.model)
    else:
        catalogue = observe_disc(disc, size["n_stars"], args.seed)
        result = fit(
            catalogue,
            seed=args.seed,
            threads=args.threads,
            progress=False,
            **size["fit"],
        )
        learned = result.potential
        learned.save(out / "potential.yml")
        summary["report"] = result.report()

    x_test, _ = disc.sample(2**14, seed=args.seed + 10_000)
    r = np.linalg.norm(x_test, axis=1)
    x_test = x_test[r < np.quantile(r, 0.9)]
    summary["potential"] = compare_disc(learned, truth, x_test.T * u.kpc)
    with warnings.catch_warnings():
        # The maps reach beyond the stars on purpose.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        fig = plot_disc_comparison(learned, truth, x_test.T * u.kpc)
    fig.savefig(out / "disc_comparison.png", dpi=110)

    with warnings.catch_warnings():
        # The export averages the network over azimuth; how far that moves
        # its forces is measured below.
        warnings.simplefilter("ignore", NonAxisymmetryWarning)
        cylspline = learned.to_cylspline()
    q = x_test.T * u.kpc
    a_net, a_cyl = (p.acceleration(q).value for p in (learned, cylspline))
    export_error = np.linalg.norm(a_cyl - a_net, axis=0) / np.linalg.norm(a_net, axis=0)
    summary["cylspline_vs_network_force_median"] = float(np.median(export_error))
    summary["cylspline"] = compare_disc(cylspline, truth, q)
    summary["orbits"] = _orbits(
        disc, (learned, cylspline, truth), size["orbit_time"], args.seed, out
    )
    print(json.dumps(summary, indent=2, default=str))
    return summary


def _orbits(disc, potentials, time: u.Quantity, seed: int, out: Path) -> dict:
    """Disc orbits in the learned potential and its export against the truth."""
    learned, cylspline, truth = potentials
    w0 = disc.to_phase_space_position(*disc.sample(N_ORBITS, seed=seed + 20_000))
    n_steps = int((time / ORBIT_STEP).decompose())
    numbers = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        for name, pot in (("learned", learned), ("cylspline", cylspline)):
            table = compare_orbits(pot, truth, w0, dt=ORBIT_STEP, n_steps=n_steps)
            numbers[name] = {
                f"median_rel_diff_{k}": float(np.nanmedian(table[f"{k}_rel_diff"]))
                for k in ("pericenter", "apocenter", "period")
            }
        shown = [
            p.integrate_orbit(w0[:3], dt=ORBIT_STEP, n_steps=n_steps)
            for p in (learned, truth)
        ]
    plot_orbits(*shown).savefig(out / "disc_orbits.png", dpi=70)
    return numbers


if __name__ == "__main__":
    main()
