"""The solar neighbourhood from a Gaia-like catalogue: K_z(z), ρ_local, v_c(R).

The galaxy is a Miyamoto-Nagai disc, a Hernquist bulge and an NFW halo
(:func:`~gala_deeppotential.mocks.disc_galaxy_potential`, v_c = 230 km/s at
8 kpc); its stars are an exact cold disc
(:class:`~gala_deeppotential.mocks.ShuDiscDF`), turning clockwise in the
Galactocentric frame as the Milky Way does. A survey sees the 2^17 stars
within 1.5 kpc of the Sun, as Gaia would
(:func:`~gala_deeppotential.mocks.mock_gaia_catalogue`): parallaxes, proper
motions and radial velocities with DR3-like errors
(:class:`~gala_deeppotential.mocks.GaiaErrorModel`), and radial velocities
for only 30% of the stars. The catalogue is written to ``gaia_like.ecsv``,
read back, and fitted with :func:`gala_deeppotential.fit`, which

* keeps the stars without radial velocities (they inform the density of
  positions, and with the radial velocity integrated out, the velocities),
* deconvolves the errors of the ``_error`` columns,
* fits Φ inside the 1.5 kpc sphere, given as a
  :class:`~gala_deeppotential.selection.SkySelection`.

The script prints, as JSON, what the fit reports it did and the local
quantities against the truth
(:func:`~gala_deeppotential.local.compare_local`: forces, K_z at 1.1 kpc, the
local density, the Oort constants), and draws K_z(z) and the rotation curve
near the Sun (``local.png``). Run from the repository root; a fit of 2^17
stars without errors takes about 15 minutes on 2 cores, and the deconvolution
makes each step of the flows about ``error_samples`` (2) times as costly::

    .venv/bin/python examples/gaia_like_local.py --out gaia_like

``--quick`` runs every step at a reduced size in about a minute; its
potential is far from the truth.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np

from gala_deeppotential import fit
from gala_deeppotential.local import compare_local, local_quantities, plot_local
from gala_deeppotential.mocks import (
    GaiaErrorModel,
    ShuDiscDF,
    disc_galaxy_potential,
    mock_gaia_catalogue,
)
from gala_deeppotential.selection import SkySelection
from gala_deeppotential.sky import SkyFrame

RADIUS = 1.5 * u.kpc
SIZES = {
    "full": {"n_stars": 2**17, "fit": {}},
    "quick": {
        # Smaller or shorter fits (2^12 stars, or 2 epochs) leave flows so far
        # from the DF that the Φ fit can find nothing better than a constant.
        "n_stars": 2**14,
        "fit": {
            "df_options": {"n_flows": 2, "epochs": 4},
            "potential_options": {"n_samples": 2**12, "n_steps": 200},
        },
    },
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gaia_like", help="output folder")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # The truth, and what Gaia would see of it.
    truth = ShuDiscDF(disc_galaxy_potential(), sense="clockwise")
    sun = SkyFrame().offset * u.kpc
    x, v = truth.sample_sphere(size["n_stars"], sun, RADIUS, seed=args.seed)
    catalogue = mock_gaia_catalogue(
        x, v, errors=GaiaErrorModel(), rv_fraction=0.3, seed=args.seed
    )
    path = out / "gaia_like.ecsv"
    catalogue.write(path, overwrite=True)

    # The fit: error columns and missing radial velocities need no options.
    with warnings.catch_warnings():
        # A local volume skips the virial calibration, and says why.
        warnings.simplefilter("ignore", UserWarning)
        result = fit(
            path,
            selection=SkySelection(distance_limit=RADIUS),
            seed=args.seed,
            threads=args.threads,
            progress=False,
            **size["fit"],
        )
    report = result.report(threads=args.threads)
    result.save(out / "potential.yml", report=report)

    # Against the truth, at fresh stars of the volume.
    x_test, _ = truth.sample_sphere(2**14, sun, RADIUS, seed=args.seed + 1)
    d = np.linalg.norm(x_test - sun.value, axis=1)
    x_test = x_test[d < np.quantile(d, 0.8)]
    scores = compare_local(result.potential, truth.potential, x_test.T, sun)
    local = local_quantities(result.potential, sun, [0.5, 1.1] * u.kpc)
    plot_local(result.potential, truth.potential, sun).savefig(
        out / "local.png", dpi=120
    )
    summary = {
        "survey": report["survey"],
        "virial": report["virial"],
        "local": {
            "v_c_kms": float(local["v_c"].value),
            "oort_A": float(local["A"].value),
            "oort_B": float(local["B"].value),
            "rho_Msun_pc3": float(local["rho"].value),
            "Sigma_1p1_Msun_pc2": float(local["Sigma"][1].value),
        },
        "against_truth": scores,
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
