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


def test_docs_hold_no_control_characters():
    # A LaTeX "\v" or "\f" written through a non-raw string becomes a control
    # character that renders as nothing.
    bad = []
    for path in sorted(DOCS.rglob("*")):
        if path.suffix not in (".md", ".rst", ".py") or "_build" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in line):
                bad.append(f"{path.name}:{number + 1}")
    assert not bad, bad


def test_the_benchmarks_page_is_short():
    # Today's figures only; the history of variants lives in record.md.
    assert (DOCS / "benchmarks.md").stat().st_size < 15_000
    assert (DOCS / "record.md").is_file()
