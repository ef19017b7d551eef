"""examples/compare_orbits.py at reduced size: orbits agree with analytic Plummer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

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
    # 0.35%, apocentre 0.058%, period 0.14% (1.1/0.40/0.55% with the paper's
    # network of x alone, radial=False).
    limits = {"pericenter": 0.01, "apocenter": 0.003, "period": 0.005}
    for key, limit in limits.items():
        assert result[f"median_rel_diff_{key}"] < limit, key
    assert result["integration_time_myr"] > 2000
    assert result["median_energy_drift"] < 1e-3
    assert out.stat().st_size > 10_000


@pytest.fixture(scope="module")
def plummer_seeds(tmp_path_factory):
    """The example at a tiny but trained size, for seeds 0, 1 and 2.

    2^13 stars and many small flow steps (690 per member at batch 64), Φ
    fitted for 800 steps of 256 points: about 25 s per seed on one thread.
    Full-size numbers are in docs/examples.md.
    """
    example = _load("plummer_end_to_end")
    sizes = ["--n-stars", "8192", "--n-flows", "2", "--df-epochs", "6"]
    sizes += ["--df-batch-size", "64", "--df-lr", "5e-3", "--n-phi", "2048"]
    sizes += ["--phi-steps", "800", "--phi-batch-size", "256", "--threads", "1"]
    runs = []
    for seed in range(3):
        out = tmp_path_factory.mktemp(f"plummer{seed}")
        argv = [*sizes, "--n-orbits", "4", "--orbit-steps", "600", "--seed"]
        runs.append((out, example.main([*argv, str(seed), "--out", str(out)])))
    return runs


def test_plummer_end_to_end_example(plummer_seeds):
    # Measured for seeds 0-4 (within 3 b): KL 0.045, 0.073, 0.050, 0.060,
    # 0.041 nats; Φ 1.3, 2.1, 0.95, 1.2, 0.84%; acceleration 6.5, 11.5, 6.1,
    # 7.6, 5.9%; radial force bias +0.08, -6.8, -0.43, -0.17, -1.6%,
    # after virial scales of 1.08-1.16 (1.16 warns: so short a fit has not
    # converged); density 9.5, 14, 8.6, 16, 11%;
    # orbits' energy drift 1e-5 to 5e-5. Each seed within the bounds that
    # hold for all five, and the median of three within tighter ones.
    summaries = [metrics["summary_r_lt_3b"] for _, metrics in plummer_seeds]
    for (out, metrics), summary in zip(plummer_seeds, summaries, strict=True):
        assert 0 < metrics["df_kl_nats"] < 0.15
        assert summary["phi"] < 0.03
        assert summary["acc"] < 0.15
        assert abs(summary["a_r_bias"]) < 0.1
        assert summary["rho"] < 0.25
        assert metrics["orbits"]["energy_drift"] < 1e-3
        assert metrics["virial"]["applied"]
        for name in ("df", "potential", "errors", "orbits"):
            assert (out / f"{name}.png").stat().st_size > 10_000, name
    median = {key: np.median([s[key] for s in summaries]) for key in summaries[0]}
    assert median["acc"] < 0.09
    assert abs(median["a_r_bias"]) < 0.02
    assert median["phi"] < 0.018


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


def test_disc_galaxy_example(tmp_path):
    # The smoke size: 2^12 stars observed as an ICRS SkyCoord, 2 flows for 4
    # epochs, 200 Φ steps, 0.3 Gyr of orbits. Its potential is far from the
    # truth (measured: 54% in v_c; so short a training cannot follow the
    # rotation); what is checked is that the steps run, that the circular
    # speed has the right order, and that the export follows the network to
    # within its own non-axisymmetry (measured 33%).
    example = _load("disc_galaxy")
    summary = example.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    assert summary["report"]["potential"]["steps"] == 200
    assert summary["potential"]["vc_rel_err_median"] < 0.8
    assert summary["cylspline_vs_network_force_median"] < 0.5
    for name in ("disc_comparison.png", "disc_orbits.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert (tmp_path / "potential.yml").is_file()


def test_gaia_like_local_example(tmp_path):
    # The smoke size: 2^14 stars of the 1.5 kpc volume with Gaia-like errors
    # and radial velocities for 30%, 2 flows for 4 epochs, 200 Φ steps. What
    # is checked is that the catalogue round trip and every step run and that
    # the fit used what the catalogue holds; the potential is far from the
    # truth at this size.
    example = _load("gaia_like_local")
    summary = example.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    survey = summary["survey"]
    assert survey["stars_for_positions"] == 2**14
    # Binomial: 30% of 16384 is 4915 +- 59.
    assert abs(survey["stars_for_velocities"] - 4915) < 300
    assert survey["deconvolution"] == {"error_samples": 2, "error_epochs": None}
    assert survey["truncated_likelihood"] is True
    assert survey["selection"]["distance_limit_kpc"] == 1.5
    assert not summary["virial"]["applied"]
    assert np.isfinite(summary["against_truth"]["rho_local_rel_err"])
    for name in ("local.png", "gaia_like.ecsv", "potential.pt"):
        assert (tmp_path / name).stat().st_size > 1000


def test_stationarity_example_in_quick_mode(tmp_path):
    example = _load("stationarity_check")
    summary = example.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    assert summary["n_stars"] == 8192 and summary["kick_km_s"] == 30.0
    assert summary["units"] == {"length": "kpc", "time": "Myr"}
    assert {"Rz", "xy", "median_abs_relative"} <= set(summary)
    assert (tmp_path / "stationarity.png").stat().st_size > 10_000


@pytest.mark.slow
def test_error_bars_example_in_quick_mode(tmp_path):
    example = _load("error_bars")
    work = tmp_path / "work"
    summary = example.main(
        ["--quick", "--threads", "1", "--out", str(tmp_path), "--work", str(work)]
    )
    assert summary["n_stars"] == 8192 and summary["groups"] == 2
    assert summary["v_c_8kpc_km_s"][1] > 0
    assert summary["orbit"]["apocenter_kpc"][1] > 0
    assert (tmp_path / "error_bars.png").stat().st_size > 10_000
    # The kept fits make a second run draw without fitting again.
    again = example.main(
        ["--quick", "--threads", "1", "--out", str(tmp_path), "--work", str(work)]
    )
    assert again["v_c_8kpc_km_s"] == summary["v_c_8kpc_km_s"]
    assert again["wall_s_bands"] < 5
