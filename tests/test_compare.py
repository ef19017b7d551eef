from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
import torch
from gala.dynamics import PhaseSpacePosition
from gala.potential import PlummerPotential
from gala.units import galactic

from gala_deeppotential.compare import (
    compare_orbits,
    compare_potentials,
    plot_comparison,
    plot_distribution_function,
    plot_error_profiles,
    plot_orbits,
)
from gala_deeppotential.mocks import PlummerTruth, plummer_sample

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
    # The orbits start together and drift apart: zero at t = 0, the final
    # column is the summary, and by the end they are far out of phase.
    div = table["phase_divergence_t"]
    assert div.shape == (5, len(table.meta["t"])) == (5, 4001)
    np.testing.assert_array_equal(div[:, 0], 0.0)
    np.testing.assert_array_equal(div[:, -1], table["phase_divergence"])
    assert np.all(div[:, 10] < div[:, -1]) and np.all(div[:, -1] > 0.1)
    with pytest.raises(ValueError, match="integrator must be one of"):
        compare_orbits(heavier, reference, w0, dt=1, n_steps=2, integrator="euler")


def test_plot_comparison(reference, positions):
    fig = plot_comparison(reference, reference, positions, n_grid=21)
    assert len(fig.axes) == 6  # four panels and two colour bars
    scatter = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(scatter[:, 0], scatter[:, 1])


def _mesh(fig, k):
    """The values of the colour mesh of axis k, as a float array with NaNs."""
    return np.ma.filled(fig.axes[k].collections[0].get_array().astype(float), np.nan)


def test_plot_distribution_function_truth_panel_is_analytic():
    truth = PlummerTruth()
    fig = plot_distribution_function(truth, truth, r_max=3, v_max=1.5, n_grid=12)
    assert len(fig.axes) == 6  # three panels and three colour bars
    centres = (np.arange(12) + 0.5) * np.array([[1.5 / 12], [3 / 12]])
    r, v = np.meshgrid(centres[1], centres[0])
    energy = 0.5 * v**2 - 1 / np.sqrt(1 + r**2)
    f = 24 * np.sqrt(2) / (7 * np.pi**3) * np.clip(-energy, 0, None) ** 3.5
    p = 16 * np.pi**2 * r**2 * v**2 * f
    expected = np.log10(np.where(p > 0, p, np.nan))
    np.testing.assert_allclose(_mesh(fig, 0), expected, rtol=1e-12)
    ratio = _mesh(fig, 2)
    np.testing.assert_array_equal(np.isnan(ratio), p == 0)  # blank where unbound
    np.testing.assert_array_equal(ratio[p > 0], 1.0)


class _ScaledTruth:
    """A DF object with a torch log_prob, like FlowEnsemble: 1.1 times the truth."""

    def log_prob(self, x, v):
        return torch.as_tensor(PlummerTruth().log_f(x, v) + np.log(1.1)).float()


def test_plot_distribution_function_ratio_of_objects():
    fig = plot_distribution_function(
        _ScaledTruth(), PlummerTruth(), r_max=3, v_max=1.5, n_grid=10
    )
    ratio = _mesh(fig, 2)
    np.testing.assert_allclose(ratio[np.isfinite(ratio)], 1.1, rtol=1e-6)
    with pytest.raises(ValueError, match="r_max and v_max"):
        plot_distribution_function(_ScaledTruth(), PlummerTruth())


def test_plot_distribution_function_sample_against_truth():
    truth = PlummerTruth()
    n = 2**16
    x, v = truth.sample(n, seed=4)
    fig = plot_distribution_function(
        np.hstack([x, v]), truth, r_max=3, v_max=1.5, n_grid=12
    )
    ratio = _mesh(fig, 2)
    expected = 10 ** _mesh(fig, 0) * n * (3 / 12) * (1.5 / 12)  # stars per cell
    full = expected > 400
    # Poisson noise and the cell-centre approximation: measured max |z| 2.4 (50 cells).
    z = (ratio[full] - 1) * np.sqrt(expected[full])
    assert full.sum() > 40 and np.max(np.abs(z)) < 5
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        plot_distribution_function(np.ones((5, 4)), truth, r_max=1, v_max=1)


def test_plot_orbits(reference):
    # A circular orbit at r = 3 kpc: r(t) is constant in the reference.
    r0 = 3.0 * u.kpc
    v_c = reference.circular_velocity([3.0, 0, 0] * u.kpc)[0]
    w0 = PhaseSpacePosition(
        pos=[[3.0, 4.0], [0, 0], [0, 1.0]] * u.kpc,
        vel=[[0, 0], [v_c.value, 150], [0, 20]] * v_c.unit,
    )
    ref = reference.integrate_orbit(w0, dt=1 * u.Myr, n_steps=300)
    heavier = PlummerPotential(m=1.1 * M, b=B, units=galactic)
    learned = heavier.integrate_orbit(w0, dt=1 * u.Myr, n_steps=300)
    fig = plot_orbits(learned, ref)
    assert len(fig.axes) == 6  # two orbits, three panels each
    r_ref, r_learned = (line.get_ydata() for line in fig.axes[2].lines)
    # Leapfrog at dt = 1 Myr: measured at most 0.12% from r0.
    np.testing.assert_allclose(r_ref, r0.value, rtol=2e-3)
    # The heavier sphere pulls the circular orbit inwards.
    assert np.all(r_learned[1:] < r0.value)
    x_ref, y_ref = fig.axes[0].lines[0].get_data()
    np.testing.assert_array_equal(x_ref, ref.x[:, 0].to_value(u.kpc))
    np.testing.assert_array_equal(y_ref, ref.y[:, 0].to_value(u.kpc))
    assert fig.axes[2].get_xlabel() == "t [Myr]"
    assert len(plot_orbits(learned, ref, max_orbits=1).axes) == 3
    with pytest.raises(ValueError, match="differ in shape"):
        plot_orbits(learned[:10], ref)


def test_plot_error_profiles(reference, positions):
    bins = np.geomspace(0.3, 30, 9) * u.kpc
    heavier = PlummerPotential(m=1.02 * M, b=B, units=galactic)
    table, _ = compare_potentials(heavier, reference, positions, r_bins=bins)
    same, _ = compare_potentials(reference, reference, positions, r_bins=bins)
    fig = plot_error_profiles({"heavier": table, "same": same})
    assert len(fig.axes) == 4
    acc_axis, bias_axis = fig.axes[1], fig.axes[2]
    r, acc = acc_axis.lines[0].get_data()
    np.testing.assert_allclose(r, np.sqrt(bins[:-1] * bins[1:]).value)
    np.testing.assert_allclose(acc, 0.02, rtol=1e-8)
    np.testing.assert_allclose(bias_axis.lines[0].get_ydata(), 0.02, rtol=1e-8)
    np.testing.assert_allclose(bias_axis.lines[1].get_ydata(), 0.0, atol=1e-12)
    assert acc_axis.get_xlabel() == "r [kpc]" and acc_axis.get_yscale() == "log"
    with pytest.raises(ValueError, match="unknown quantities"):
        plot_error_profiles(table, quantities=["speed"])
