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
    # A two-minute fit: circular speeds within 10% where the data are.
    np.testing.assert_allclose(v_learned, v_true, rtol=0.1)
    # Leapfrog's energy error in the learned potential is that of the same
    # orbits in the analytic one (max 5.2e-3 at this step), not more.
    orbit = namespace["orbit"]
    exact = truth.potential().integrate_orbit(orbit[0], dt=1 * u.Myr, n_steps=1000)

    def drift(o):
        energy = o.energy().value
        return np.max(np.abs(energy / energy[0] - 1))

    assert drift(orbit) < 2 * drift(exact)
