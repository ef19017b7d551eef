from __future__ import annotations

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
from gala.dynamics import PhaseSpacePosition
from gala.integrate import DOPRI853Integrator
from gala.units import galactic
from scipy import integrate

from gala_deeppotential.mocks import DehnenPotential, EddingtonDF

POINTS = np.random.default_rng(0).normal(size=(3, 50)) * 2 * u.kpc


@pytest.mark.parametrize(
    ("gamma", "reference"),
    [
        (1.0, gp.HernquistPotential(m=1e11 * u.Msun, c=2 * u.kpc, units=galactic)),
        (2.0, gp.JaffePotential(m=1e11 * u.Msun, c=2 * u.kpc, units=galactic)),
    ],
)
def test_matches_hernquist_and_jaffe(gamma, reference):
    dehnen = DehnenPotential(m=1e11 * u.Msun, a=2 * u.kpc, gamma=gamma, units=galactic)
    for method in ["energy", "gradient", "density", "hessian"]:
        ours, theirs = (
            getattr(dehnen, method)(POINTS),
            getattr(reference, method)(POINTS),
        )
        assert ours.shape == theirs.shape
        scale = np.max(np.abs(theirs))
        assert np.max(np.abs(ours - theirs) / scale).decompose() < 1e-12, method


def test_cusp_is_self_consistent():
    # gamma = 3/2: the gradient is the derivative of the energy, the density
    # is the Laplacian over 4 pi G, and the enclosed mass is M (r/(r+a))^1.5.
    dehnen = DehnenPotential(m=1.0, a=1.0, gamma=1.5, units=None, origin=[0.5, 0, 0])
    x = np.array([[0.8], [0.2], [-0.1]])
    step = 1e-6
    numeric = [
        (dehnen.energy(x + step * e) - dehnen.energy(x - step * e)).value[0]
        / (2 * step)
        for e in np.eye(3)[:, :, None]
    ]
    np.testing.assert_allclose(dehnen.gradient(x).value[:, 0], numeric, rtol=1e-8)
    laplacian = np.trace(dehnen.hessian(x).value[:, :, 0])
    assert dehnen.density(x).value[0] == pytest.approx(
        laplacian / (4 * np.pi), rel=1e-12
    )
    centred = DehnenPotential(m=1.0, a=1.0, gamma=1.5, units=None)
    r = np.linalg.norm(x[:, 0])
    enclosed = centred.mass_enclosed(x).value[0]
    assert enclosed == pytest.approx((r / (r + 1)) ** 1.5, rel=1e-6)


def test_eddington_f_of_the_cusp_integrates_back_to_its_density():
    # rho(r) = 4 sqrt(2) pi int_0^Psi f(E) sqrt(Psi - E) dE.
    dehnen = DehnenPotential(m=1.0, a=1.0, gamma=1.5, units=None)
    edd = EddingtonDF(dehnen)
    for r in [0.01, 0.1, 1.0, 10.0]:
        point = np.array([[r], [0.0], [0.0]])
        psi = edd._phi_max - dehnen.energy(point).value[0]
        integral = integrate.quad(
            lambda e, psi=psi: edd._f_binding(np.array([e]))[0] * np.sqrt(psi - e),
            0,
            psi,
            limit=400,
        )[0]
        rho = 4 * np.sqrt(2) * np.pi * integral
        assert rho / dehnen.density(point).value[0] == pytest.approx(1, abs=2e-3)


def test_orbits_integrate():
    dehnen = DehnenPotential(m=1e11 * u.Msun, a=2 * u.kpc, gamma=1.5, units=galactic)
    w0 = PhaseSpacePosition(pos=[4, 0, 0] * u.kpc, vel=[0, 150, 20] * u.km / u.s)
    orbit = gp.Hamiltonian(dehnen).integrate_orbit(
        w0, dt=0.5 * u.Myr, n_steps=2000, Integrator=DOPRI853Integrator
    )
    energy = orbit.energy().value
    assert np.max(np.abs(energy / energy[0] - 1)) < 1e-8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m": 1.0, "a": 1.0, "gamma": 3.0}, "0 <= gamma < 3"),
        ({"m": 1.0, "a": -1.0, "gamma": 1.5}, "must be positive"),
    ],
)
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DehnenPotential(units=None, **kwargs)
