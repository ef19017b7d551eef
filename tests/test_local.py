"""Local quantities against a potential where they are known in closed form."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.constants import G
from gala.potential import LogarithmicPotential
from gala.units import galactic

from gala_deeppotential.local import compare_local, local_quantities, plot_local

V_C = 220 * u.km / u.s
SUN = [-8.0, 0.0, 0.02] * u.kpc


def flat_halo():
    """Φ = v_c^2 ln r: a flat rotation curve and ρ = v_c^2 / (4π G r^2)."""
    return LogarithmicPotential(v_c=V_C, r_h=0.0, q1=1, q2=1, q3=1, units=galactic)


def test_local_quantities_of_a_flat_rotation_curve():
    z = [0.5, 1.1] * u.kpc
    local = local_quantities(flat_halo(), SUN, z)
    R = 8.0 * u.kpc
    assert abs(local["v_c"] / V_C - 1) < 1e-6
    # A flat rotation curve: A = -B = v_c / (2 R).
    oort = (V_C / (2 * R)).to(u.km / u.s / u.kpc)
    assert abs(local["A"] / oort - 1) < 1e-5
    assert abs(local["B"] / -oort - 1) < 1e-5
    rho = (V_C**2 / (4 * np.pi * G * R**2)).to(u.Msun / u.pc**3)
    assert abs(local["rho"] / rho - 1) < 1e-6
    K_z = (V_C**2 * z / (R**2 + z**2)).to(u.km**2 / u.s**2 / u.kpc)
    np.testing.assert_allclose(local["K_z"].value, K_z.value, rtol=1e-9)
    Sigma = (K_z / (2 * np.pi * G)).to(u.Msun / u.pc**2)
    np.testing.assert_allclose(local["Sigma"].value, Sigma.value, rtol=1e-9)


def test_compare_local_scores_zero_for_the_truth_and_sees_a_heavier_halo():
    rng = np.random.default_rng(0)
    q = SUN.value[:, None] + rng.uniform(-1, 1, size=(3, 500))
    same = compare_local(flat_halo(), flat_halo(), q, SUN)
    assert same["acc_rel_err_median"] == 0 and same["rho_local_rel_err"] == 0
    heavier = LogarithmicPotential(
        v_c=1.01 * V_C, r_h=0.0, q1=1, q2=1, q3=1, units=galactic
    )
    scored = compare_local(heavier, flat_halo(), q, SUN)
    # 1% in v_c is 2.01% in every force and in the density.
    assert abs(scored["acc_rel_err_median"] - 0.0201) < 1e-6
    assert abs(scored["rho_local_rel_err"] - 0.0201) < 1e-6
    assert abs(scored["oort_A_err"] - 0.01 * scored["oort_A_true"]) < 1e-4
    # The points reach |z| < 1.1 kpc on one side: K_z is compared there.
    assert scored["kz_height_kpc"] == min(q[2].max(), -q[2].min())


def test_plot_local_draws_both_panels():
    fig = plot_local(flat_halo(), flat_halo(), SUN)
    assert len(fig.axes) == 2
