from __future__ import annotations

import pickle

import pytest
import torch

from gala_deeppotential import io


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_round_trip(tmp_path):
    t = {"a": torch.arange(5.0), "b": torch.eye(3, dtype=torch.float64)}
    path = io.save(tmp_path / "sub" / "m.pt", kind="k", tensors=t, metadata={"x": 1})
    tensors, meta = io.load(path)
    assert meta["x"] == 1 and meta["kind"] == "k" and meta["format_version"] == 1
    for k in t:
        assert torch.equal(tensors[k], t[k]) and tensors[k].dtype == t[k].dtype


def test_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"metadata": _Evil(), "tensors": {}}))
    with pytest.raises(ValueError, match="not a readable"):
        io.load(path)


def test_refuses_foreign_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a gala-deeppotential model file"):
        io.load(path)
    with pytest.raises(FileNotFoundError, match="no model file"):
        io.load(tmp_path / "missing.pt")


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        io.save(tmp_path / "m.pt", kind="k", tensors={}, metadata={"x": object()})
