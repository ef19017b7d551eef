"""Where and how torch runs: device names, thread counts, seeds and progress bars."""

from __future__ import annotations

__all__ = ["progress_bar", "resolve_device", "seeded", "torch_threads"]

import contextlib
from collections.abc import Iterable, Iterator

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Normalise a device name: ``None`` or ``"cpu"``, ``"cuda"`` (alias ``"gpu"``).

    Raises
    ------
    RuntimeError
        If CUDA is asked for but not available.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.lower().startswith("gpu"):
        device = "cuda" + device[3:]
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} was requested but torch sees no CUDA device; "
            "pass device='cpu', or install a CUDA build of torch on a GPU machine"
        )
    return device


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` intra-op torch threads (``None``: leave as is)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's global CPU generator seeded, restoring it after.

    Used to initialise network weights reproducibly without disturbing the
    caller's random state. ``None`` leaves the generator alone.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def progress_bar(iterable: Iterable, *, enabled: bool, **kwargs) -> Iterable:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; tqdm is imported lazily."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
