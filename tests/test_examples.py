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
    # 0.35%, apocentre 0.058%, period 0.14% (1.1/0.40/0.55% without the radial
    # input of the Φ network, now the default).
    limits = {"pericenter": 0.01, "apocenter": 0.003, "period": 0.005}
    for key, limit in limits.items():
        assert result[f"median_rel_diff_{key}"] < limit, key
    assert result["integration_time_myr"] > 2000
    assert result["median_energy_drift"] < 1e-3
    assert out.stat().st_size > 10_000


def test_plummer_end_to_end_example(tmp_path):
    example = _load("plummer_end_to_end")
    # Tiny but trained: 2^13 stars and many small flow steps (690 per member
    # at batch 64), Φ fitted for 800 steps of 256 points; about 25 s on one
    # thread. Full-size numbers are in docs/examples.md.
    sizes = ["--n-stars", "8192", "--n-flows", "2", "--df-epochs", "6"]
    sizes += ["--df-batch-size", "64", "--df-lr", "5e-3", "--n-phi", "2048"]
    sizes += ["--phi-steps", "800", "--phi-batch-size", "256", "--threads", "1"]
    result = example.main(
        [*sizes, "--n-orbits", "4", "--orbit-steps", "600", "--out", str(tmp_path)]
    )
    # Measured for seeds 0, 1, 2 (this test runs seed 0), with the virial
    # calibration by the stars: KL 0.048, 0.079, 0.053 nats; within 3b Φ 1.2%,
    # 1.8%, 0.9%; acceleration 6.3%, 10.4%, 5.9%; radial force bias -0.6%,
    # -4.2%, +0.25% (-6.2%, -14.2%, -7.6% before the calibration); density
    # 9.7%, 13%, 8.0%; orbits' energy drift 2e-4, 2e-4, 3e-4.
    assert 0 < result["df_kl_nats"] < 0.15
    assert result["phi_r_lt_3b"] < 0.03
    assert result["acc_r_lt_3b"] < 0.12
    assert abs(result["a_r_bias_r_lt_3b"]) < 0.02
    assert result["rho_r_lt_3b"] < 0.2
    assert result["orbit_median_energy_drift"] < 1e-3
    for name in ("fig2_df", "fig3_potential", "errors", "orbits"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name


def test_compare_analytic_example(tmp_path):
    example = _load("compare_analytic")
    # Φ, with the radius as an input, fitted to the Eddington DF's exact
    # gradients at 2^13 stars, 800 steps of 256 points (about 15 s on one
    # thread): the Φ fit, DeepPotential and the comparison against analytic
    # Hernquist, without the flows.
    result = example.main(
        [
            *["--exact-gradients", "--n-phi", "8192"],
            *["--phi-steps", "800"],
            *["--phi-batch-size", "256", "--threads", "1", "--out", str(tmp_path)],
        ]
    )
    # Measured for seeds 0, 1, 2 (this test runs seed 0), by bin of 0-0.3,
    # 0.3-1, 1-3 and 3-10 a: acceleration 0.42/0.20/0.18/0.39%,
    # 0.39/0.20/0.22/0.63% and 0.41/0.11/0.17/0.54%; radial bias at most
    # 0.28% in any bin; with the radial softening fixed at 1e-3 instead of
    # the 0.1% radius quantile, the cusp bin measured 0.22-0.26%. The cusp bin
    # is this good only because the network has the radius as an input (the
    # default): without it (--no-radial) the same fit measured 63-67% there,
    # and 33% at full size.
    acc, bias = result["acc_by_bin"], result["a_r_bias_by_bin"]
    for k, limit in enumerate((0.006, 0.005, 0.005, 0.012)):
        assert acc[k] < limit and abs(bias[k]) < 0.005, k
    assert result["acc_r_lt_3a"] < 0.004  # measured 0.19%, 0.23%, 0.15%
    assert result["phi_r_lt_3a"] < 0.0005  # measured 0.014-0.019%
    assert "df_kl_nats" not in result
    assert (tmp_path / "errors.png").stat().st_size > 10_000
    assert (tmp_path / "comparison.ecsv").is_file()
