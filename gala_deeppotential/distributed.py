"""Distributed ensemble training on torch's own launcher, ``torchrun``.

An ensemble of flows is embarrassingly parallel: each rank trains a
contiguous share of the members, and the members are then gathered into
one ensemble. Because a member's training depends only on the data, the
seed and its global index (see :func:`~gala_deeppotential.training.train_flows`),
the gathered ensemble equals the one a single process fits with the same
seed. Run it as::

    torchrun --nproc-per-node=4 -m gala_deeppotential.distributed \\
        stars.npy --output df.pt --n-flows 16 --epochs 24

where ``stars.npy`` holds an (N, 6) array of positions then velocities.
Every rank reads the data itself; the ranks exchange only tensors and plain
metadata. The process group comes from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with
the ``nccl`` backend and device ``cuda:LOCAL_RANK`` on GPUs, ``gloo`` on the
CPU. See ``docs/scaling.md`` for multi-GPU nodes and SLURM.
"""

from __future__ import annotations

__all__ = [
    "broadcast_potential_fit",
    "fit_distribution_function",
    "main",
    "member_range",
    "process_group",
]

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .df import Flow, FlowEnsemble
from .nn import PotentialNet
from .options import add_option_arguments, parsed_options, resolve_options
from .potential import PotentialFit
from .runtime import resolve_device
from .training import DFOptions, train_flows


def member_range(n_flows: int, rank: int, world_size: int) -> range:
    """Global indices of the members that ``rank`` trains: a contiguous share.

    The first ``n_flows % world_size`` ranks train one member more than the
    others.

    Parameters
    ----------
    n_flows : int
        Ensemble size K, at least ``world_size``.
    rank, world_size : int
        This process's rank and the number of ranks.

    Returns
    -------
    members : range

    Examples
    --------
    >>> [member_range(10, r, 4) for r in range(4)]
    [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    if n_flows < world_size:
        raise ValueError(
            f"{world_size} ranks need at least {world_size} flows, got {n_flows}; "
            "raise n_flows or start fewer processes"
        )
    share, extra = divmod(n_flows, world_size)
    start = rank * share + min(rank, extra)
    return range(start, start + share + (rank < extra))


def fit_distribution_function(
    data: np.ndarray | torch.Tensor,
    options: DFOptions | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    noisy: Any = None,
    selection: Any = None,
    ball: Any = None,
    **overrides: Any,
) -> FlowEnsemble:
    """Fit a :class:`~gala_deeppotential.FlowEnsemble` with its members over ranks.

    Call it on every rank, with the same arguments and data. Each rank trains
    :func:`member_range` of the members as one batch; the ranks agree after
    every epoch whether all are done, then gather every member to every rank
    (``all_gather`` of the weights, ``all_gather_object`` of the histories
    and standardizers, which are plain JSON-able data). If
    ``torch.distributed`` is not yet initialised, the process group is
    created from torchrun's environment and destroyed on return.

    Parameters
    ----------
    data : array or :class:`torch.Tensor`, shape (N, 6)
        Positions then velocities, the same on every rank.
    options : :class:`~gala_deeppotential.training_options.DFOptions` or dict, optional
        The architecture and training, as for
        :func:`gala_deeppotential.fit_distribution_function`; ``n_flows`` must
        be at least the number of ranks.
    seed, threads, noisy, selection, ball
        As for :func:`~gala_deeppotential.training.train_flows`.
    device : str or :class:`torch.device`, optional
        By default ``cuda:LOCAL_RANK`` where CUDA is available, else the CPU;
        ``"cuda"`` also means ``cuda:LOCAL_RANK``.
    progress : bool
        Show a progress bar on rank 0.
    checkpoint_dir : str or path-like, optional
        Each rank checkpoints its share in ``members-A-B/`` there (members A
        to B - 1), so rerunning the same command with the same number of
        ranks resumes.
    **overrides
        Fields of :class:`~gala_deeppotential.training_options.DFOptions`.

    Returns
    -------
    df : :class:`~gala_deeppotential.FlowEnsemble`
        All K members, on this rank's device, on every rank: the same, with
        the same seed, as one process's
        :func:`~gala_deeppotential.fit_distribution_function` (bit for bit on
        the CPU; see ``tests/test_distributed.py``).
    """
    options = resolve_options(DFOptions, options, **overrides)
    with process_group(device) as device:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        members = member_range(options.n_flows, rank, world_size)
        shard_dir = None
        if checkpoint_dir is not None:
            shard_dir = Path(checkpoint_dir) / f"members-{members.start}-{members.stop}"
        shard = FlowEnsemble(options, n_flows=len(members), device=device)
        train_flows(
            shard,
            data,
            options,
            seed=seed,
            first_member=members.start,
            threads=threads,
            progress=progress and rank == 0,
            checkpoint_dir=shard_dir,
            process_group=dist.group.WORLD,
            noisy=noisy,
            selection=selection,
            ball=ball,
        )
        return FlowEnsemble.concatenate(_gather_shards(shard))


def broadcast_potential_fit(fit: PotentialFit | None) -> PotentialFit:
    """Rank 0's Φ fit on every rank (the others pass None and wait for it).

    The fit travels as its tensors and plain metadata; the other ranks wait
    in the broadcast, for at most the process group's timeout (30 minutes by
    default).
    """
    payload = [None]
    if dist.get_rank() == 0:
        tensors, net_config = fit.net.to_state()
        record = {k: v for k, v in vars(fit).items() if k != "net"}
        payload = [({k: t.cpu() for k, t in tensors.items()}, net_config, record)]
    dist.broadcast_object_list(payload, src=0)
    tensors, net_config, record = payload[0]
    return PotentialFit(
        net=PotentialNet.from_state(tensors, net_config).eval(), **record
    )


@contextlib.contextmanager
def process_group(
    device: str | torch.device | None = None,
) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration of a ``with`` block.

    Creates the group from torchrun's environment (``nccl`` for a CUDA
    device, ``gloo`` on the CPU) unless one already exists, and destroys on
    exit only a group it created, so the calls nest.

    Parameters
    ----------
    device : str or :class:`torch.device`, optional
        By default ``cuda:LOCAL_RANK`` where CUDA is available, else the CPU;
        ``"cuda"`` also means ``cuda:LOCAL_RANK``.

    Yields
    ------
    device : :class:`torch.device`
        This rank's device.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    owned = not dist.is_initialized()
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        if owned:
            dist.destroy_process_group()


def _gather_shards(shard: FlowEnsemble) -> list[FlowEnsemble]:
    """Every rank's fitted shard, in rank order, rebuilt on this rank."""
    flow, scaler = shard.flow, shard.standardizer
    keys = sorted(flow.member_keys())
    state = flow.state_dict()
    # One (members, P) float32 block per rank, padded to the largest share:
    # all_gather needs equal shapes, and K need not divide evenly.
    packed = torch.cat([state[name].flatten(1) for name in keys], dim=1)
    metas = [None] * dist.get_world_size()
    dist.all_gather_object(
        metas,
        {
            "n_flows": shard.n_flows,
            "history": shard.history,
            "standardizer": scaler.to_dict(),
        },
    )
    rows = max(meta["n_flows"] for meta in metas)
    padded = packed.new_zeros(rows, packed.shape[1])
    padded[: len(packed)] = packed
    blocks = [torch.empty_like(padded) for _ in metas]
    dist.all_gather(blocks, padded)
    shards = []
    for meta, block in zip(metas, blocks, strict=True):
        part = FlowEnsemble(shard.options, n_flows=meta["n_flows"])
        part.device = shard.device
        part.flow = _unpack(flow, block[: meta["n_flows"]], keys)
        part.standardizer = type(scaler).from_dict(meta["standardizer"])
        part.history = meta["history"]
        shards.append(part)
    return shards


def _unpack(template: Flow, packed: torch.Tensor, keys: list[str]) -> Flow:
    """A flow shaped like ``template`` whose members are the rows of ``packed``."""
    flow = template.select([0] * len(packed))
    state = flow.state_dict()
    offset = 0
    for name in keys:
        width = state[name][0].numel()
        state[name] = packed[:, offset : offset + width].reshape(state[name].shape)
        offset += width
    flow.load_state_dict(state)
    return flow


def main(argv: list[str] | None = None) -> None:
    """Command line for ``torchrun ... -m gala_deeppotential.distributed``.

    Reads an (N, 6) ``.npy`` array on every rank, fits the ensemble across
    the ranks, and on rank 0 writes it with
    :meth:`~gala_deeppotential.FlowEnsemble.save` and prints a JSON summary.
    """
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node=N -m gala_deeppotential.distributed",
        description="Fit a flow ensemble with its members spread over torchrun's "
        "ranks, and write it as one model file.",
    )
    parser.add_argument(
        "data", help=".npy file of an (N, 6) array: positions then velocities"
    )
    parser.add_argument("--output", required=True, help="model file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda if any, else cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--progress", action="store_true")
    add_option_arguments(parser.add_argument_group("DF options"), DFOptions)
    args = parser.parse_args(argv)

    data = np.load(args.data, allow_pickle=False)
    rank = int(os.environ.get("RANK", 0))
    start = time.perf_counter()
    df = fit_distribution_function(
        data,
        parsed_options(args, DFOptions),
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
        progress=args.progress,
        seed=args.seed,
        threads=args.threads,
    )
    if rank == 0:
        path = df.save(args.output)
        summary = {
            "output": str(path),
            "n_flows": df.n_flows,
            "world_size": int(os.environ.get("WORLD_SIZE", 1)),
            "device": str(df.device),
            "epochs": len(df.history["epoch"]),
            "val_loss": float(np.mean(df.history["val_loss"][-1])),
            "wall_s": time.perf_counter() - start,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
