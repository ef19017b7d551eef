"""The Sphinx site builds with no warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("DeepPotential", "FlowEnsemble", "fit_potential", "to_phase_space"):
        assert name in api
    assert (tmp_path / "html" / "benchmarks.html").is_file()
