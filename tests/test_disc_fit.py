"""The Φ fit on a small exact disc: the forces a rotation curve needs come out right."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from gala_deeppotential.gala_potential import DeepPotential
from gala_deeppotential.meridional import compare_disc
from gala_deeppotential.mocks import PlummerTruth, ShuDiscDF, disc_galaxy_potential
from gala_deeppotential.potential import (
    ROTATING_STEPS,
    STEPS,
    DFGradients,
    _default_steps,
    fit_potential,
)


@pytest.fixture(scope="module")
def disc():
    return ShuDiscDF(disc_galaxy_potential())


def test_exact_gradient_fit_on_a_small_disc(disc):
    # 2^13 points, 1000 steps of 512 (about 45 s on one thread). Measured for
    # seeds 0, 1, 2 at 3686 fresh stars within the 90% radius: acceleration
    # 4.3, 4.1, 3.6%; a_R 0.44, 0.49, 0.35%; a_z (|z| >= 0.2 kpc) 12.8, 11.7,
    # 9.7%; v_c 0.19, 0.17, 0.10%; density 14.0, 14.2, 13.8%. The bounds hold
    # for all three; the full-size numbers are in docs/discs.md.
    x, v = disc.sample(2**13, seed=0)
    fit = fit_potential(
        (x, v, *disc.grad_log_f(x, v)),
        n_steps=1000,
        batch_size=512,
        seed=0,
        threads=1,
        progress=False,
    )
    x_test, _ = disc.sample(4096, seed=99)
    r = np.linalg.norm(x_test, axis=1)
    x_test = x_test[r < np.quantile(r, 0.9)]
    pot = DeepPotential.from_fit(fit, units=disc.units)
    errors = compare_disc(pot, disc.potential, x_test.T * u.kpc)
    assert errors["acc_rel_err_median"] < 0.06
    assert errors["aR_rel_err_median"] < 0.008
    assert errors["vc_rel_err_median"] < 0.004
    assert errors["az_rel_err_median"] < 0.2
    assert errors["rho_rel_err_median"] < 0.2


def test_a_rotating_system_gets_more_steps(disc):
    x, v = disc.sample(2048, seed=1)
    assert _default_steps(DFGradients(x, v, x, v)) == ROTATING_STEPS
    x, v = PlummerTruth().sample(2048, seed=1)
    assert _default_steps(DFGradients(x, v, x, v)) == STEPS
