"""HEALPix pixel indices: equal areas, the two orderings, known pixels."""

from __future__ import annotations

import numpy as np
import pytest

from gala_deeppotential.healpix import ang2pix, npix2nside

N_POINTS = 400_000


@pytest.fixture(scope="module")
def directions():
    rng = np.random.default_rng(0)
    lon = rng.uniform(0, 2 * np.pi, N_POINTS)
    lat = np.arcsin(rng.uniform(-1, 1, N_POINTS))
    return lon, lat


@pytest.mark.parametrize("order", ["ring", "nested"])
@pytest.mark.parametrize("nside", [1, 2, 8, 32])
def test_pixels_have_equal_areas(directions, order, nside):
    pix = ang2pix(nside, *directions, order=order)
    npix = 12 * nside**2
    assert pix.min() == 0 and pix.max() == npix - 1
    counts = np.bincount(pix, minlength=npix)
    expected = N_POINTS / npix
    # Pearson's chi^2 per pixel is 1 +- sqrt(2 / npix) for equal areas; a
    # pixel boundary misplaced by a tenth of a pixel would give >> 1.
    chi2 = np.sum((counts - expected) ** 2 / expected) / npix
    assert abs(chi2 - 1) < 5 * np.sqrt(2 / npix)


@pytest.mark.parametrize("nside", [2, 16])
def test_ring_and_nested_are_the_same_pixels(directions, nside):
    ring = ang2pix(nside, *directions, order="ring")
    nested = ang2pix(nside, *directions, order="nested")
    pairs = np.unique(np.stack([ring, nested]), axis=1)
    # One-to-one: each ring pixel is exactly one nested pixel.
    assert pairs.shape[1] == 12 * nside**2


def test_known_pixels():
    # North pole: ring pixel 0 and, nested, the last subpixel of face 0.
    assert ang2pix(2, np.array([0.1]), np.array([1.55]))[0] == 0
    assert ang2pix(2, np.array([0.1]), np.array([1.55]), order="nested")[0] == 3
    # South pole: the first pixel of the last ring; nested, face 8's first.
    assert ang2pix(2, np.array([0.1]), np.array([-1.55]))[0] == 44
    assert ang2pix(2, np.array([0.1]), np.array([-1.55]), order="nested")[0] == 32
    # Ring pixels run east within a ring.
    lon = np.radians([10.0, 100.0, 190.0, 280.0])
    assert np.all(np.diff(ang2pix(4, lon, np.zeros(4))) > 0)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="12 \\* nside\\*\\*2"):
        npix2nside(100)
    with pytest.raises(ValueError, match="order"):
        ang2pix(2, np.zeros(1), np.zeros(1), order="peano")
