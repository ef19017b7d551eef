"""Learned against true axisymmetric potentials: the disc metrics and figure."""

from __future__ import annotations

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
from gala.units import galactic

from gala_deeppotential.meridional import (
    circular_speed,
    compare_disc,
    plot_disc_comparison,
)
from gala_deeppotential.mocks import disc_galaxy_potential


def _heavier(factor: float) -> gp.CCompositePotential:
    pot = gp.CCompositePotential()
    for name, part in disc_galaxy_potential().items():
        params = dict(part.parameters)
        params["m"] = factor * params["m"]
        pot[name] = type(part)(**params, units=galactic)
    return pot


@pytest.fixture(scope="module")
def stars():
    rng = np.random.default_rng(0)
    R = rng.uniform(1, 12, 2000)
    phi = rng.uniform(0, 2 * np.pi, 2000)
    z = rng.laplace(0, 0.3, 2000)
    return np.stack([R * np.cos(phi), R * np.sin(phi), z]) * u.kpc


def test_a_potential_against_itself(stars):
    errors = compare_disc(disc_galaxy_potential(), disc_galaxy_potential(), stars)
    for key, value in errors.items():
        if key.endswith("median") or key.endswith("p90"):
            assert value == pytest.approx(0, abs=1e-12), key


def test_a_heavier_galaxy(stars):
    # Every force and the density are 4% larger, the circular speed 2% faster.
    errors = compare_disc(_heavier(1.04), disc_galaxy_potential(), stars)
    for key in ("acc_rel_err_median", "aR_rel_err_median", "az_rel_err_median"):
        assert errors[key] == pytest.approx(0.04, rel=1e-9)
    assert errors["rho_rel_err_median"] == pytest.approx(0.04, rel=1e-9)
    assert errors["vc_rel_err_median"] == pytest.approx(np.sqrt(1.04) - 1, rel=1e-9)
    assert errors["n_az"] == int(np.sum(np.abs(stars[2]) >= 0.2 * u.kpc))


def test_circular_speed_matches_gala():
    pot = disc_galaxy_potential()
    R = np.array([2.0, 8.0, 15.0])
    expected = pot.circular_velocity(np.stack([R, 0 * R, 0 * R]) * u.kpc)
    np.testing.assert_allclose(
        circular_speed(pot, R), expected.to_value(u.kpc / u.Myr), rtol=1e-10
    )


def test_figure(stars):
    fig = plot_disc_comparison(_heavier(1.04), disc_galaxy_potential(), stars)
    titles = [ax.get_title() for ax in fig.axes]
    assert "rotation curve" in titles and "vertical force at R = 8 kpc" in titles
    assert any("4.00%" in title for title in titles)


def test_bad_positions():
    with pytest.raises(ValueError, match=r"shape \(3, N\)"):
        compare_disc(disc_galaxy_potential(), disc_galaxy_potential(), np.zeros((5, 3)))
