from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from gala.potential import PlummerPotential
from gala.units import galactic

from gala_deeppotential.compare import (
    compare_orbits,
    compare_potentials,
    plot_comparison,
)
from gala_deeppotential.mocks import plummer_sample

M, B = 1e11 * u.Msun, 3 * u.kpc


@pytest.fixture(scope="module")
def reference():
    return PlummerPotential(m=M, b=B, units=galactic)


@pytest.fixture(scope="module")
def positions():
    return plummer_sample(2000, m=M, b=B, units=galactic, seed=3).xyz


def test_identical_potentials_have_zero_error(reference, positions):
    table, summary = compare_potentials(reference, reference, positions)
    for key in ("phi", "acc", "acc_angle", "a_r_bias", "rho", "v_circ", "m_enc"):
        assert summary[key] == pytest.approx(0.0, abs=1e-12), key
        assert np.all(np.abs(table[key]) < 1e-12), key


def test_heavier_sphere_errors_are_analytic(reference, positions):
    heavier = PlummerPotential(m=1.02 * M, b=B, units=galactic)
    bins = [0, 3, 9, 30] * u.kpc
    table, summary = compare_potentials(
        heavier, reference, positions, r_bins=bins, r_summary=9 * u.kpc
    )
    # Forces, density and mass scale with m; v_circ with sqrt(m).
    for key in ("acc", "a_r_bias", "rho", "m_enc"):
        assert summary[key] == pytest.approx(0.02, rel=1e-8), key
    assert summary["v_circ"] == pytest.approx(np.sqrt(1.02) - 1, rel=1e-8)
    assert summary["acc_angle"] == pytest.approx(0.0, abs=1e-5)
    # Φ_l - Φ_r = 0.02 Φ_r is not a constant: what remains after the gauge fix.
    phi_r = reference.energy(positions).value
    r = np.linalg.norm(positions.value, axis=0)
    inside = r < 9
    shift = 0.02 * phi_r - np.median(0.02 * phi_r)
    expected = np.median(np.abs(shift / phi_r)[inside])
    assert summary["phi"] == pytest.approx(expected, rel=1e-8)
    assert summary["n"] == inside.sum()
    assert list(table["n"]) == [
        np.sum((r >= lo) & (r < hi)) for lo, hi in [(0, 3), (3, 9), (9, 30)]
    ]
    assert table["r_max"].unit == u.kpc


def test_dimensionless_potentials():
    ref = PlummerPotential(m=1.0, b=1.0, units=None)
    pos = np.random.default_rng(1).normal(size=(3, 300))
    _, summary = compare_potentials(
        PlummerPotential(m=0.9, b=1.0, units=None), ref, pos
    )
    assert summary["a_r_bias"] == pytest.approx(-0.1, rel=1e-8)
    with pytest.raises(u.UnitTypeError, match="dimensionless"):
        compare_potentials(ref, ref, pos * u.kpc)


def test_bad_positions(reference):
    with pytest.raises(ValueError, match=r"shape \(3, N\)"):
        compare_potentials(reference, reference, np.ones((4, 3)) * u.kpc)
    with pytest.raises(ValueError, match="NaN"):
        compare_potentials(reference, reference, np.full((3, 2), np.nan) * u.kpc)


def test_compare_orbits(reference):
    w0 = plummer_sample(5, m=M, b=B, units=galactic, seed=2)
    same = compare_orbits(reference, reference, w0, dt=0.5 * u.Myr, n_steps=4000)
    for key in ("pericenter", "apocenter", "period"):
        np.testing.assert_array_equal(same[f"{key}_rel_diff"], 0.0)
    np.testing.assert_array_equal(same["phase_divergence"], 0.0)
    # Leapfrog's bounded energy error at ~60 steps per inner orbit: measured
    # at most 1.3e-3 here.
    assert np.all(same["energy_drift"] < 3e-3)
    heavier = PlummerPotential(m=1.1 * M, b=B, units=galactic)
    table = compare_orbits(heavier, reference, w0, dt=0.5 * u.Myr, n_steps=4000)
    # Deeper potential, same initial conditions: smaller, faster orbits.
    assert np.all(table["apocenter_learned"] < table["apocenter_reference"])
    assert np.all(table["period_learned"] < table["period_reference"])
    with pytest.raises(ValueError, match="integrator must be one of"):
        compare_orbits(heavier, reference, w0, dt=1, n_steps=2, integrator="euler")


def test_plot_comparison(reference, positions):
    fig = plot_comparison(reference, reference, positions, n_grid=21)
    assert len(fig.axes) == 6  # four panels and two colour bars
    scatter = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(scatter[:, 0], scatter[:, 1])
