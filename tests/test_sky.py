"""SkyFrame: the Galactocentric frame as arrays, against astropy."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord

from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME, galcen_frame_to_dict
from gala_deeppotential.sky import SkyFrame

# astropy's transforms are exact to rounding; these allow for it.
ANGLE_ATOL = 1e-12  # rad
RELATIVE = 1e-12


@pytest.fixture(scope="module")
def stars():
    rng = np.random.default_rng(4)
    x = rng.normal([-8.1, 0.0, 0.0], 1.0, size=(500, 3))
    v = rng.normal([0.0, 230.0, 0.0], 40.0, size=(500, 3))
    coord = SkyCoord(
        x=x[:, 0] * u.kpc,
        y=x[:, 1] * u.kpc,
        z=x[:, 2] * u.kpc,
        v_x=v[:, 0] * u.km / u.s,
        v_y=v[:, 1] * u.km / u.s,
        v_z=v[:, 2] * u.km / u.s,
        frame=DEFAULT_GALCEN_FRAME,
    )
    return x, v, coord


def test_observe_matches_astropy(stars):
    x, v, coord = stars
    obs = SkyFrame().observe(x, v)
    icrs = coord.icrs
    np.testing.assert_allclose(obs["ra"], icrs.ra.rad, rtol=0, atol=ANGLE_ATOL)
    np.testing.assert_allclose(obs["dec"], icrs.dec.rad, rtol=0, atol=ANGLE_ATOL)
    np.testing.assert_allclose(obs["parallax"], 1 / icrs.distance.kpc, rtol=RELATIVE)
    for ours, theirs in (
        ("pmra", icrs.pm_ra_cosdec),
        ("pmdec", icrs.pm_dec),
        ("radial_velocity", icrs.radial_velocity),
    ):
        value = theirs.to_value(u.mas / u.yr if "pm" in ours else u.km / u.s)
        np.testing.assert_allclose(obs[ours], value, rtol=0, atol=1e-10)


def test_round_trip_numpy_and_torch(stars):
    x, v, _ = stars
    frame = SkyFrame(galcen_frame_to_dict(DEFAULT_GALCEN_FRAME))
    obs = frame.observe(x, v)
    x2, v2 = frame.galactocentric(obs)
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(v2, v, rtol=0, atol=1e-10)
    x3, v3 = frame.galactocentric({k: torch.as_tensor(a) for k, a in obs.items()})
    np.testing.assert_allclose(x3.numpy(), x2, rtol=0, atol=1e-13)
    np.testing.assert_allclose(v3.numpy(), v2, rtol=0, atol=1e-11)


def test_heliocentric_galactic(stars):
    x, _, coord = stars
    distance, lon, lat = SkyFrame().heliocentric(x, "galactic")
    galactic = coord.galactic
    np.testing.assert_allclose(distance, galactic.distance.kpc, rtol=RELATIVE)
    np.testing.assert_allclose(lat, galactic.b.rad, rtol=0, atol=ANGLE_ATOL)
    dlon = np.angle(np.exp(1j * (lon - galactic.l.rad)))
    np.testing.assert_allclose(dlon, 0, atol=ANGLE_ATOL)
    with pytest.raises(ValueError, match="'icrs' or 'galactic'"):
        SkyFrame().heliocentric(x, "fk5")
