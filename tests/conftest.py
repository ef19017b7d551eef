"""Shared fixtures: each test seeds torch; numpy draws use explicit Generators."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    # Two-core CI: one intra-op thread avoids oversubscription for small batches.
    torch.set_num_threads(1)
