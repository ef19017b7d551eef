"""Tests for the ``deep-potential`` command line: ``fit`` and ``compare``."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord
from astropy.table import Table
from gala.units import galactic

import gala_deeppotential
from gala_deeppotential.cli import main
from gala_deeppotential.compare import compare_potentials
from gala_deeppotential.gala_potential import DeepPotential, ExtrapolationWarning
from gala_deeppotential.mocks import PlummerTruth, plummer_sample
from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME, galcen_frame_to_dict
from gala_deeppotential.pipeline import fit

pipeline_module = importlib.import_module("gala_deeppotential.pipeline")

# Tiny sizes: only the plumbing is tested here (a few seconds per fit).
TINY_ARGS = [
    "--n-flows",
    "1",
    "--epochs",
    "2",
    "--phi-steps",
    "60",
    "--phi-points",
    "512",
    "--potential-options",
    '{"batch_size": 256}',
    "--threads",
    "1",
    "--seed",
    "5",
    "--quiet",
]
TINY = {
    "df_options": {"n_flows": 1, "epochs": 2},
    "potential_options": {"batch_size": 256, "n_steps": 60, "n_samples": 512},
    "threads": 1,
    "seed": 5,
    "progress": False,
}
# A frame unlike the default, given on the command line part by part.
FRAME_ARGS = ["--galcen-distance", "8.3", "--v-sun", "11.1", "250.0", "7.25"]
FRAME = {
    **galcen_frame_to_dict(DEFAULT_GALCEN_FRAME),
    "galcen_distance_kpc": 8.3,
    "galcen_v_sun_kms": [11.1, 250.0, 7.25],
}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    """An ECSV of 1500 Plummer-sphere stars (1e11 Msun, 3 kpc) in ICRS."""
    w = plummer_sample(1500, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=1)
    stars = SkyCoord(w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME)
    table = stars.icrs.to_table()
    table.rename_columns(["pm_ra_cosdec", "pm_dec"], ["pmra", "pmdec"])
    path = tmp_path_factory.mktemp("catalogue") / "stars.ecsv"
    table.write(path)
    return path


@pytest.fixture(scope="module")
def model(catalogue, tmp_path_factory) -> Path:
    """The YAML file written by ``deep-potential fit ... --resume``."""
    path = tmp_path_factory.mktemp("model") / "model.yml"
    argv = ["fit", str(catalogue), "-o", str(path), "--resume"]
    assert main([*argv, *FRAME_ARGS, *TINY_ARGS]) == 0
    return path


def _energies(pot) -> np.ndarray:
    q = np.random.default_rng(0).normal(scale=4.0, size=(3, 50)) * u.kpc
    return pot.energy(q).to_value(u.kpc**2 / u.Myr**2)


# ---------------------------------------------------------------------------
# fit


def test_fit_writes_a_model_equal_to_the_python_api(model, catalogue):
    assert model.with_suffix(".pt").is_file()
    assert model.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    stationarity = model.with_name(model.stem + "_stationarity.png")
    assert stationarity.read_bytes()[:4] == b"\x89PNG"
    from_yaml = gp.load(model)
    from_model_file = DeepPotential.from_file(model.with_suffix(".pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gala_deeppotential.VirialWarning)
        direct = fit(catalogue, galcen_frame=FRAME, **TINY).potential
    assert from_yaml.units == galactic
    assert np.array_equal(_energies(from_yaml), _energies(direct))
    assert np.array_equal(_energies(from_model_file), _energies(direct))


def test_fit_records_frame_units_settings_and_report(model):
    record = json.loads(model.with_suffix(".json").read_text())
    assert record["phase_space"]["frame"] == FRAME
    assert record["phase_space"]["units"][:4] == ["kpc", "Myr", "solMass", "rad"]
    assert record["phase_space"]["n_stars"] == 1500
    assert record["config"]["df_options"]["n_flows"] == 1
    assert record["config"]["virial"]["center"] is None
    assert record["config"]["potential_options"]["n_steps"] == 60
    report = record["report"]
    assert report["df"]["epochs"] == 2
    assert 0 <= report["stationarity"]["median_relative_residual"] <= 1
    assert 0 <= report["negative_density_fraction"] <= 1
    regions = report["stationarity"]["regions"]
    assert regions["n_stars"] == 1500 and regions["units"]["length"] == "kpc"
    assert set(regions) >= {"Rz", "xy", "threshold", "median_abs_relative"}


def test_fit_prints_its_summary_and_warnings(catalogue, tmp_path, capsys):
    argv = ["fit", str(catalogue), "-o", str(tmp_path / "m.yml"), "--no-plot"]
    quiet = [a for a in TINY_ARGS if a != "--quiet"]
    with pytest.warns(gala_deeppotential.VirialWarning):
        assert main([*argv, *FRAME_ARGS, *quiet]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "m.json").read_text())["report"]
    assert lines[0].startswith("fitted 1500 stars (0 dropped) in ")
    # So short a fit is far from converged: the calibration declines, and the
    # summary says so and why, with the report's warnings.
    assert not report["virial"]["applied"]
    assert lines[0].endswith("virial calibration not applied (see below)")
    assert report["warnings"][0].startswith("virial calibration not applied")
    assert lines[1 : 1 + len(report["warnings"])] == [
        f"warning: {line}" for line in report["warnings"]
    ]
    assert lines[-2].startswith("survey: ")
    assert lines[-3].startswith("stationarity: ")
    assert lines[-1].startswith("wrote ")


def test_fit_with_a_stated_window_or_none(catalogue, tmp_path, capsys):
    argv = ["fit", str(catalogue), "--no-plot", *FRAME_ARGS]
    quiet = [a for a in TINY_ARGS if a != "--quiet"]
    assert main([*argv, "-o", str(tmp_path / "a.yml"), "--no-virial", *quiet]) == 0
    assert "no virial calibration (--no-virial)" in capsys.readouterr().out
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["config"]["virial"] is None and record["report"]["virial"] == {}
    window = ["--virial-center", "0.5", "0", "0", "--virial-radius", "30"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gala_deeppotential.VirialWarning)
        assert main([*argv, "-o", str(tmp_path / "b.yml"), *window, *TINY_ARGS]) == 0
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["config"]["virial"]["center"] == [0.5, 0.0, 0.0]
    assert record["config"]["virial"]["radius"] == 30.0
    assert record["report"]["virial"]["center"] == [0.5, 0.0, 0.0]


def test_fit_with_a_pattern_speed(catalogue, tmp_path, capsys):
    argv = ["fit", str(catalogue), "--no-plot", *FRAME_ARGS, "--no-virial"]
    quiet = [a for a in TINY_ARGS if a != "--quiet"]
    out = tmp_path / "bar.yml"
    assert main([*argv, "-o", str(out), "--pattern-speed", "-30", *quiet]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "the potential rotates about z at a pattern speed given as -30 km/s/kpc"
        in lines
    )
    record = json.loads(out.with_suffix(".json").read_text())
    per_myr = (-30 * u.km / u.s / u.kpc).to_value(1 / u.Myr)
    assert record["config"]["pattern_speed"] == pytest.approx(per_myr)
    assert record["report"]["potential"]["pattern_speed"] == pytest.approx(per_myr)
    pot = gp.load(out)
    assert pot.pattern_speed.to_value(u.km / u.s / u.kpc) == pytest.approx(-30)
    fitted = tmp_path / "fitted.yml"
    assert main([*argv, "-o", str(fitted), "--pattern-speed", "joint", *quiet]) == 0
    assert "pattern speed fitted with the potential as" in capsys.readouterr().out
    record = json.loads(fitted.with_suffix(".json").read_text())
    assert record["config"]["pattern_speed"] == "joint"
    assert np.isfinite(record["report"]["potential"]["pattern_speed"])


def test_resume_of_a_finished_fit_reads_the_checkpoint(model, catalogue, monkeypatch):
    assert (model.parent / "model.checkpoint" / "manifest.json").is_file()
    before = _energies(gp.load(model))

    def refuse(*args, **kwargs):
        raise AssertionError("the finished Φ fit was recomputed")

    monkeypatch.setattr(pipeline_module, "fit_potential", refuse)
    argv = ["fit", str(catalogue), "-o", str(model), "--resume", "--no-plot"]
    assert main([*argv, *FRAME_ARGS, *TINY_ARGS]) == 0
    assert np.array_equal(_energies(gp.load(model)), before)


# ---------------------------------------------------------------------------
# compare


def test_compare_prints_the_numbers_of_compare_potentials(model, tmp_path, capsys):
    out_json = tmp_path / "table.json"
    argv = ["compare", str(model), "--m", "1e11", "--b", "3", "--n-points", "1024"]
    assert main([*argv, "--seed", "2", "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()

    truth = PlummerTruth(m=1e11 * u.Msun, b=3 * u.kpc, units=galactic)
    x, _ = truth.sample(1024, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table, summary = compare_potentials(
            gp.load(model),
            truth.potential(),
            x.T,
            r_bins=[0, 3, 9, 30],
            r_summary=9,
        )
    assert lines[1].split() == table.colnames
    for line, row in zip(lines[2:5], table, strict=True):
        printed = [float(s) for s in line.split()]
        expected = [float(getattr(row[c], "value", row[c])) for c in table.colnames]
        np.testing.assert_allclose(printed, expected, rtol=5e-4)
    assert lines[6].split() == list(summary)
    printed = [float(s) for s in lines[7].split()]
    np.testing.assert_allclose(printed, list(summary.values()), rtol=5e-4)
    assert json.loads(out_json.read_text())["summary"] == summary


# ---------------------------------------------------------------------------
# Errors: one line, exit status 2, the fix named


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["fit", "{missing}", "-o", "{out}/m.yml"], "no catalogue file"),
        (["fit", "{catalogue}", "-o", "{out}/m.pt"], "name the YAML file"),
        (["fit", "{no_rv}", "-o", "{out}/m.yml"], "radial"),
        (["fit", "{catalogue}", "-o", "{out}/m.yml", "--frame", "{{bad"], "JSON"),
        (
            ["fit", "{catalogue}", "-o", "{out}/m.yml", "--column", "rv"],
            "QUANTITY=NAME",
        ),
        (
            [
                "fit",
                "{catalogue}",
                "-o",
                "{out}/m.yml",
                "--df-options",
                '{{"seed": 1}}',
            ],
            "DFOptions has no setting 'seed'",
        ),
        (
            ["fit", "{catalogue}", "-o", "{out}/m.yml", "--checkpoint-dir", "{ckpt}"],
            "different fit",
        ),
        (
            ["fit", "{catalogue}", "-o", "{out}/m.yml", "--pattern-speed", "fast"],
            "number in km/s/kpc, 'fit', 'continuity'",
        ),
        (["compare", "{out}/none.yml", "--m", "1", "--b", "1"], "no model at"),
        (["compare", "{model}"], "give the Plummer sphere's --m"),
        (["compare", "{model}", "--units", "dimensionless"], "same kind"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    argv, match, catalogue, model, tmp_path, capsys
):
    no_rv = tmp_path / "no_rv.ecsv"
    table = Table.read(catalogue)
    table.remove_column("radial_velocity")
    table.write(no_rv)
    paths = {
        "missing": tmp_path / "missing.ecsv",
        "out": tmp_path,
        "catalogue": catalogue,
        "no_rv": no_rv,
        "model": model,
        "ckpt": model.parent / "model.checkpoint",
    }
    argv = [a.format(**paths) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"deep-potential {argv[0]}: error: ")
    assert re.search(match, err), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_gpu_is_a_user_error(catalogue, tmp_path, capsys):
    argv = ["fit", str(catalogue), "-o", str(tmp_path / "m.yml"), "--device", "cuda"]
    assert main(argv) == 2
    assert "device='cpu'" in capsys.readouterr().err


def test_console_script_exit_status_without_traceback(tmp_path):
    script = Path(sys.executable).with_name("deep-potential")
    missing = subprocess.run(
        [script, "fit", str(tmp_path / "none.ecsv"), "-o", str(tmp_path / "m.yml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("deep-potential fit: error: no catalogue")


def test_help_documents_every_option(capsys):
    expected = {
        "fit": [
            "--output",
            "--column",
            "--units",
            "--drop-invalid",
            "--frame",
            "--galcen-distance",
            "--v-sun",
            "--z-sun",
            "--roll",
            "--n-flows",
            "--epochs",
            "--df-time-limit",
            "--phi-steps",
            "--phi-points",
            "--pattern-speed",
            "--seed",
            "--device",
            "--threads",
            "--no-virial",
            "--virial-center",
            "--virial-radius",
            "--errors",
            "--distance-limit",
            "--footprint",
            "--footprint-order",
            "--footprint-frame",
            "--checkpoint-dir",
            "--resume",
            "--no-plot",
            "--quiet",
        ],
        "compare": ["--against", "--m", "--b", "--units", "--n-points", "--r-bins"],
    }
    for command, options in expected.items():
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        shown = capsys.readouterr().out
        for option in options:
            assert option in shown, (command, option)
