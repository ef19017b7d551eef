"""Where and how torch runs: device names, thread counts, seeds and progress bars."""

from __future__ import annotations

__all__ = [
    "member_generator",
    "progress_bar",
    "resolve_device",
    "seeded",
    "torch_threads",
]

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
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


def member_generator(seed: int, member: int, stream: int) -> torch.Generator:
    """A CPU generator for one ensemble member, seeded from ``(seed, member, stream)``.

    The seed comes from :class:`numpy.random.SeedSequence`, which hashes the
    three integers into statistically independent streams. A member's random
    draws (its initial weights, its minibatch order) then depend only on the
    fit's seed and the member's global index, not on which other members
    share its batch or process, so an ensemble trained in shards equals one
    trained whole.

    Parameters
    ----------
    seed : int
        The fit's seed (any integer; taken modulo 2^64).
    member : int
        Global index of the member, ``>= 0``.
    stream : int
        Which independent stream of that member, ``>= 0`` (one per use).

    Returns
    -------
    generator : :class:`torch.Generator`

    Examples
    --------
    >>> a = member_generator(0, 3, 0)
    >>> b = member_generator(0, 3, 0)
    >>> bool(torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b)))
    True
    """
    entropy = [int(seed) % 2**64, int(member), int(stream)]
    (state,) = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state))


def progress_bar(iterable: Iterable, *, enabled: bool, **kwargs) -> Iterable:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; tqdm is imported lazily."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
