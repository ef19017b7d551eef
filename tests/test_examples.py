"""examples/compare_orbits.py at reduced size: orbits agree with analytic Plummer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_orbits_example(tmp_path):
    example = _load("compare_orbits")
    out = tmp_path / "orbits.png"
    result = example.main(
        [
            "--fit-steps",
            "400",
            "--n-points",
            "8192",
            "--n-orbits",
            "10",
            "--out",
            str(out),
        ]
    )
    # A 400-step fit on 2^13 exact-gradient points; measured medians: pericentre
    # 1.1%, apocentre 0.40%, period 0.55% (the full-size fit: 0.26/0.05/0.05%).
    limits = {"pericenter": 0.025, "apocenter": 0.01, "period": 0.012}
    for key, limit in limits.items():
        assert result[f"median_rel_diff_{key}"] < limit, key
    assert result["integration_time_myr"] > 2000
    assert result["median_energy_drift"] < 1e-3
    assert out.stat().st_size > 10_000


# Tiny sizes keep each run to about 30 s on two cores; the potential is then
# far from converged (its forces are most of the way too weak), so these
# tests check that the pipeline runs end to end and scores against the
# analytic truth as measured, not the accuracy of the full-size runs
# (docs/examples.md has those).
TINY = ["--n-stars", "8192", "--n-phi", "2048", "--df-epochs", "12"]
TINY += ["--phi-steps", "400", "--n-flows", "2", "--threads", "1"]


def test_plummer_end_to_end_example(tmp_path):
    example = _load("plummer_end_to_end")
    result = example.main(
        [*TINY, "--n-orbits", "4", "--orbit-steps", "600", "--out", str(tmp_path)]
    )
    # Measured at these sizes: KL 0.44 nats, Φ 14%, acceleration 64% (a_r
    # bias -63%), density 58%; energy drift 1.2e-5.
    assert 0 < result["df_kl_nats"] < 0.6
    assert result["phi_r_lt_3b"] < 0.25
    assert result["acc_r_lt_3b"] < 0.85
    assert -0.85 < result["a_r_bias_r_lt_3b"] < 0
    assert result["orbit_median_energy_drift"] < 1e-4
    for name in ("fig2_df", "fig3_potential", "errors", "orbits"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name


def test_compare_analytic_example(tmp_path):
    example = _load("compare_analytic")
    result = example.main([*TINY, "--out", str(tmp_path)])
    # Measured at these sizes: KL 1.48 nats, Φ 25%, acceleration 93% (a_r
    # bias -93%), with the error falling outwards (100%, 98%, 85%, 57% by bin).
    assert 0 < result["df_kl_nats"] < 2
    assert result["phi_r_lt_3a"] < 0.4
    assert result["acc_r_lt_3a"] < 0.99
    assert result["a_r_bias_r_lt_3a"] < 0
    acc = result["acc_by_bin"]
    assert acc[-1] < acc[0]
    for name in ("errors", "df"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
    assert (tmp_path / "comparison.ecsv").is_file()
