"""The Plummer demo writes results that match its saved potential."""

from __future__ import annotations

import json
import warnings

import gala.potential as gp
import numpy as np
import pytest
from astropy.table import QTable

from gala_deeppotential.cli import main
from gala_deeppotential.compare import compare_potentials
from gala_deeppotential.demo import run_plummer_demo
from gala_deeppotential.df import DEFAULT_N_FLOWS
from gala_deeppotential.mocks import PlummerTruth

TINY = {
    "n_stars": 4096,
    "df_options": {"epochs": 3},
    "potential_options": {"n_samples": 2048, "n_steps": 200},
    "orbit_steps": 2000,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # so short a fit is not converged
        metrics = run_plummer_demo(out, **TINY, progress=False)
    return out, metrics


def test_demo_outputs_agree_with_the_saved_potential(demo):
    out, metrics = demo
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["n_stars"] == TINY["n_stars"]
    assert metrics["n_flows"] == DEFAULT_N_FLOWS
    assert metrics["options"]["df_options"]["epochs"] == 3
    assert metrics["options"]["potential_options"]["n_steps"] == 200
    assert metrics["virial"]["n_stars"] == TINY["n_stars"]
    pot = gp.load(out / "potential.yml")
    truth = PlummerTruth()
    x_test, _ = truth.sample(2**14, seed=1000)  # the demo's held-out stars
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, summary = compare_potentials(
            pot, truth.potential(), x_test.T, r_summary=3.0
        )
    for key, value in metrics["summary_r_lt_3b"].items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    saved = QTable.read(out / "comparison.ecsv")
    np.testing.assert_allclose(saved["acc"], table["acc"], rtol=1e-12)
    for figure in ("potential", "df", "orbits", "errors"):
        assert (out / f"{figure}.png").stat().st_size > 10_000, figure
    # Energy in the learned potential is conserved along the demo's orbits.
    assert metrics["orbits"]["energy_drift"] < 1e-3
    # The flows' divergence from the true DF, in nats: positive, and finite.
    assert 0 < metrics["df_kl_nats"] < 5


def test_demo_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out
