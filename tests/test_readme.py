"""The usage example in README.md runs, and its potential is close to the truth."""

from __future__ import annotations

import re
from pathlib import Path

import astropy.units as u
import numpy as np

README = Path(__file__).parents[1] / "README.md"


def test_readme_usage_example_runs():
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    pot, truth = namespace["pot"], namespace["truth"]
    r = np.array([[3.0, 6.0, 9.0], [0, 0, 0], [0, 0, 0]]) * u.kpc
    v_learned = pot.circular_velocity(r).to_value(u.km / u.s)
    v_true = truth.potential().circular_velocity(r).to_value(u.km / u.s)
    # A one-minute fit, its forces calibrated by the stars' virial theorem:
    # circular speeds within 3% where the data are (measured +0.9, -0.1 and
    # +0.3% at 3, 6 and 9 kpc; 3.6-4.5% low without the calibration).
    np.testing.assert_allclose(v_learned, v_true, rtol=0.03)
    # Energies are conserved to Leapfrog's accuracy: halving the step cuts
    # the worst error 4 times (dt^2), so it is truncation error, not roughness
    # of the network. Measured: max 3.6e-2 at dt = 1 Myr (an orbit through the
    # short fit's over-dense core), 8.9e-3 at 0.5 Myr and 2.2e-3 at 0.25 Myr,
    # ratios 4.08 and 4.03. The finer pair is the one tested: with another
    # calibration window the coarser ratio was 3.25, the step at 1 Myr not yet
    # small against the core's crossing time.
    orbit = namespace["orbit"]
    w0 = orbit[0]
    half = pot.integrate_orbit(w0, dt=0.5 * u.Myr, n_steps=2000)
    quarter = pot.integrate_orbit(w0, dt=0.25 * u.Myr, n_steps=4000)

    def drift(o):
        energy = o.energy().value
        return np.max(np.abs(energy / energy[0] - 1))

    assert drift(orbit) < 0.05
    assert 3.5 < drift(half) / drift(quarter) < 4.5
