from __future__ import annotations

import pytest
import torch

from gala_deeppotential.runtime import resolve_device, seeded, torch_threads


def test_resolve_device_names():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        # "gpu" is read as "cuda", and a missing GPU names the fix.
        with pytest.raises(RuntimeError, match=r"device='cuda:1'.*device='cpu'"):
            resolve_device("gpu:1")


def test_torch_threads_restores():
    before = torch.get_num_threads()
    with torch_threads(3):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        with torch_threads(0):
            pass


def test_seeded_is_reproducible_and_leaves_global_state():
    state = torch.random.get_rng_state()
    with seeded(5):
        a = torch.rand(3)
    with seeded(5):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)
