"""The R-z spline potential whose far field is fitted here, against analytic discs."""

from __future__ import annotations

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
from gala.units import galactic

from gala_deeppotential.cylspline import MultipoleCylSplinePotential, log_grid

DISC = gp.MiyamotoNagaiPotential(
    m=1e11 * u.Msun, a=3 * u.kpc, b=0.3 * u.kpc, units=galactic
)


def _tabulated(potential, n: int, extent: float = 50.0):
    grid = log_grid(0.01, extent, n) * u.kpc
    return MultipoleCylSplinePotential.from_potential(potential, grid, grid)


@pytest.mark.parametrize(("n", "limit"), [(64, 1e-5), (128, 1.5e-6)])
def test_interpolates_an_analytic_disc(n, limit):
    # Measured medians: 3.9e-6 (64 points a side) and 4.4e-7 (128).
    spline = _tabulated(DISC, n)
    rng = np.random.default_rng(0)
    q = np.stack([*rng.uniform(-20, 20, (2, 5000)), rng.normal(0, 1, 5000)]) * u.kpc
    g_spline, g_disc = spline.gradient(q).value, DISC.gradient(q).value
    error = np.linalg.norm(g_spline - g_disc, axis=0) / np.linalg.norm(g_disc, axis=0)
    assert np.median(error) < limit


def test_far_field_follows_the_mass():
    # Beyond the grid the multipole fit takes over and tends to the monopole
    # -G M_grid / r: measured 0.971, 0.972 and 0.973 of -G M / r at 100, 200
    # and 300 kpc, the disc's mass less the 3% of it beyond the 50 kpc grid.
    spline = _tabulated(DISC, 64)
    r = np.array([100.0, 200.0, 300.0])
    q = np.stack([r / np.sqrt(2), np.zeros(3), r / np.sqrt(2)]) * u.kpc
    ratio = spline.energy(q).value / -(DISC.G * 1e11 / r)
    assert np.all((0.96 < ratio) & (ratio < 0.98))
    assert np.all(np.diff(ratio) > 0)  # the quadrupole dies away, not the mass


def test_saves_and_loads_with_gala(tmp_path):
    spline = _tabulated(DISC, 32)
    spline.save(tmp_path / "spline.yml")
    loaded = gp.load(tmp_path / "spline.yml")
    assert type(loaded) is MultipoleCylSplinePotential
    q = [[8.0, 0.5], [0.0, 1.0], [0.2, 4.0]] * u.kpc
    np.testing.assert_array_equal(loaded.energy(q), spline.energy(q))
