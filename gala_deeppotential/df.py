"""The distribution function: an ensemble of normalizing flows fitted to a snapshot."""

from __future__ import annotations

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_N_FLOWS",
    "MIN_STARS",
    "FlowEnsemble",
    "fit_distribution_function",
]

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import io
from .flows import BatchedFlow, FactorizedFlow, build_flow, flow_class
from .phasespace import MIN_STARS, Standardizer
from .runtime import member_generator, resolve_device, torch_threads

Flow = BatchedFlow | FactorizedFlow

# The defaults: K = 16 members trained for 16 epochs took the whole pipeline
# to a 2.80% median force error on the Plummer sphere with the paper's Φ
# network (median of 3 seeds, one run 2.5-3.4%; K = 8 for 8 epochs: 3.7%), and
# to 1.98% with today's radial one, in 7-9 minutes on 2 idle CPU cores; 32
# epochs measured worse (docs/benchmarks.md).
DEFAULT_N_FLOWS = 16
DEFAULT_EPOCHS = 16

_KIND = "flow_ensemble"
_CHECKPOINT_KIND = "flow_ensemble_checkpoint"
_CHECKPOINT_FILE = "checkpoint.pt"
# Points (summed over members) in one batched evaluation. It bounds memory
# for any N (about 8 kB per point with autograd), and measured fastest here:
# 2^13 beat 2^11 by 20% and 2^15 by 50% for the gradients, which stay in cache.
_EVAL_POINTS = 2**13
# Validation stars per member per chunk. Fixed, not shrinking with K, so that
# a member's validation loss sums the same chunks, in the same order, whatever
# the size of its batch: early stopping must not depend on the other members.
_VALIDATION_ROWS = 1024
# Rows per member in a batch should be a multiple of this, the float32 lanes
# of the widest CPU vector (AVX-512), for members to be batch-independent.
_ROW_MULTIPLE = 16
# Stream of runtime.member_generator that shuffles a member's minibatches
# (flows.INIT_STREAM draws its initial weights).
_BATCH_STREAM = 1


class FlowEnsemble:
    r"""An ensemble of K normalizing flows as a phase-space distribution function.

    The ensemble density is the mean of its members' densities,

    .. math::

        f(x, v) = \frac{1}{K} \sum_{k=1}^{K} f_k(x, v), \qquad
        f_k(y) = p_k\big(s(y)\big)\,
            \left|\det \frac{\partial s}{\partial y}\right|,

    where :math:`y = (x, v)`, :math:`s(y)` is the :class:`Standardizer` fitted
    to the training data and :math:`p_k` is member k, a spline flow (see
    :class:`~gala_deeppotential.flows.BatchedFlow`). Members are trained
    independently by maximum likelihood but batched into one module, so K
    members cost far less than K times one. All densities are in the caller's
    coordinates and units: f integrates to one over phase space.

    Parameters
    ----------
    n_flows : int
        Number of members K.
    n_steps : int
        Flow steps per member (rescale, LU linear, spline coupling).
    n_bins : int
        Spline bins.
    hidden_features, n_hidden_layers : int
        Width and depth of each coupling conditioner.
    tail_bound : float
        Half-width of the spline box, in standardized units.
    activation : {"silu", "relu"}
        Conditioner nonlinearity; the smooth SiLU gives smoother gradients of
        ln f.
    asinh_axes : sequence of int
        Heavy-tailed axes of the data, passed through an asinh by the
        :class:`Standardizer`; the positions by default.
    factorization : {"joint", "conditional"}
        Each member as one flow over the six coordinates (``"joint"``, as
        in Green & Ting 2020), or as a flow of the positions times a flow of
        the velocities conditioned on the positions,
        :math:`p_k(x)\, p_k(v \mid x)` (``"conditional"``; see
        :class:`~gala_deeppotential.flows.FactorizedFlow`).
    device : str or :class:`torch.device`
        ``"cpu"``, ``"cuda"`` (or ``"gpu"``), or ``"cuda:1"`` etc.

    Attributes
    ----------
    flow : BatchedFlow, FactorizedFlow or None
        The members, once fitted or loaded (see
        :mod:`gala_deeppotential.flows`).
    standardizer : :class:`Standardizer` or None
    history : dict
        Per epoch: ``"epoch"``, ``"train_loss"`` and ``"val_loss"`` (lists of
        K values of :math:`-\langle \ln f_k \rangle` in the caller's units),
        ``"lr"`` and ``"wall_s"``; after fitting, ``"best_epoch"`` per member.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(size=(2000, 6))
    >>> df = FlowEnsemble(n_flows=2).fit(data, epochs=2, seed=0)
    >>> x, v = df.sample(5, seed=1)
    >>> df.log_prob(x, v).shape
    torch.Size([5])
    """

    def __init__(
        self,
        n_flows: int = DEFAULT_N_FLOWS,
        *,
        n_steps: int = 4,
        n_bins: int = 8,
        hidden_features: int = 64,
        n_hidden_layers: int = 2,
        tail_bound: float = 5.0,
        activation: str = "silu",
        asinh_axes: tuple[int, ...] = (0, 1, 2),
        factorization: str = "joint",
        device: str | torch.device = "cpu",
    ) -> None:
        flow_class(factorization)  # refuse unknown names before any fit
        if int(n_flows) != n_flows or n_flows < 1:
            raise ValueError(f"n_flows must be a positive integer, got {n_flows!r}")
        self.config: dict[str, Any] = {
            "n_flows": int(n_flows),
            "n_steps": int(n_steps),
            "n_bins": int(n_bins),
            "hidden_features": int(hidden_features),
            "n_hidden_layers": int(n_hidden_layers),
            "tail_bound": float(tail_bound),
            "activation": activation,
            "asinh_axes": [int(i) for i in asinh_axes],
            "factorization": factorization,
        }
        self.device = resolve_device(device)
        self.flow: Flow | None = None
        self.standardizer: Standardizer | None = None
        self.history: dict[str, list] = _empty_history()

    @property
    def n_flows(self) -> int:
        """Number of members K."""
        return self.config["n_flows"]

    def __len__(self) -> int:
        return self.n_flows

    def __repr__(self) -> str:
        state = "fitted" if self.flow is not None else "not fitted"
        return f"FlowEnsemble(n_flows={self.n_flows}, device={self.device}, {state})"

    def _build(self, seed: int, first_member: int = 0) -> Flow:
        cfg = self.config
        return build_flow(
            6,
            n_members=cfg["n_flows"],
            n_steps=cfg["n_steps"],
            n_bins=cfg["n_bins"],
            hidden_features=cfg["hidden_features"],
            n_hidden_layers=cfg["n_hidden_layers"],
            tail_bound=cfg["tail_bound"],
            activation=cfg["activation"],
            seed=seed,
            first_member=first_member,
            factorization=cfg["factorization"],
        ).to(self.device)

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        data: np.ndarray | torch.Tensor,
        *,
        epochs: int = DEFAULT_EPOCHS,
        batch_size: int = 512,
        lr: float = 2e-3,
        warmup_fraction: float = 0.05,
        validation_fraction: float = 0.1,
        patience: int = 10,
        clip_norm: float = 10.0,
        jitter: float = 0.0,
        seed: int = 0,
        first_member: int = 0,
        threads: int | None = None,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        time_limit: float | None = None,
        process_group: Any = None,
    ) -> FlowEnsemble:
        r"""Fit every member to a phase-space sample by maximum likelihood.

        Each member minimises :math:`-\langle \ln p_k(s) \rangle` over its own
        shuffled minibatches of the same training stars, with Rectified Adam
        (Liu et al. 2019; :class:`torch.optim.RAdam`), a linear warm-up then
        cosine decay of the learning rate, and its gradient norm clipped
        separately. After each epoch the held-out validation loss is
        computed per member; a member whose loss has not improved for
        ``patience`` epochs has stopped: its best weights are final, even
        while the batch trains on for the others, and at the end every
        member gets back its best weights.

        A member's training depends only on the data, ``seed`` and its global
        index ``first_member + k``: the validation split and the
        :class:`Standardizer` come from ``seed`` and the data, shared by all
        members, while each member's initial weights and minibatch order come
        from its own generator
        (:func:`~gala_deeppotential.runtime.member_generator`). So members
        fitted in shards (``first_member``) are the members of one fit of
        the whole ensemble, and :meth:`concatenate` joins them (see
        :mod:`gala_deeppotential.distributed`).

        Parameters
        ----------
        data : array or :class:`torch.Tensor`, shape (N, 6)
            Positions then velocities, :math:`(x, y, z, v_x, v_y, v_z)`, in
            any consistent units; at least :data:`MIN_STARS` rows.
        epochs : int
            Passes over the training stars; sets the length of the schedule.
        batch_size : int
            Stars per member per step.
        lr : float
            Peak learning rate.
        warmup_fraction : float
            Fraction of the schedule spent warming up linearly from zero.
        validation_fraction : float
            Fraction of the stars held out for early stopping.
        patience : int
            Epochs without improvement before a member stops; training ends
            when all have stopped (on every rank of ``process_group``).
        clip_norm : float
            Maximum gradient norm, per member.
        jitter : float
            Standard deviation of Gaussian noise added to the standardized
            training stars, fresh in every epoch and for every member (the
            validation stars stay clean). It smooths what the flows learn from
            a finite sample, at the price of a bias of order ``jitter**2``.
        seed : int
            Seeds the split, the initial weights and the minibatches: on the
            CPU with the same ``threads``, the same seed gives bit-identical
            members.
        first_member : int
            Global index of this ensemble's first member, when it is a shard
            of a larger ensemble: member k is trained as member
            ``first_member + k`` of a fit of all members with this seed; on
            the CPU bit for bit when ``batch_size`` is a multiple of 16 (whole
            float32 vectors, so no member's rows fall in an array's ragged
            end); otherwise they differ by float32 rounding, which training
            can amplify.
        threads : int, optional
            Torch intra-op threads while fitting (restored afterwards).
        progress : bool
            Show a tqdm progress bar.
        checkpoint_dir : str or path-like, optional
            Write the full training state there after every epoch. If it
            already holds a checkpoint of this same fit (same data, settings
            and seed), training resumes from it instead of starting over,
            so an interrupted fit (Ctrl-C, a kill, a crash) loses at most
            one epoch; a finished one returns at once.
        time_limit : float, optional
            Wall-clock budget in seconds, including resumed time. The
            schedule then follows whichever of the epoch or time budget runs
            out first, so results depend on machine speed.
        process_group : :class:`torch.distributed.ProcessGroup`, optional
            When this fit is one rank's shard of a distributed fit: after
            every epoch the ranks agree (one ``all_reduce``) whether all of
            them are done, so every shard trains for as many epochs as one
            fit of the whole ensemble would. ``torch.distributed``'s default
            group is ``torch.distributed.group.WORLD``.

        Returns
        -------
        self : :class:`FlowEnsemble`

        Raises
        ------
        ValueError
            For bad data (see :data:`MIN_STARS`), or a checkpoint of a
            different fit in ``checkpoint_dir``.
        FloatingPointError
            If the loss becomes NaN or infinite (lower ``lr``).
        """
        y = _as_phase_space(data)
        settings = {
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "warmup_fraction": float(warmup_fraction),
            "validation_fraction": float(validation_fraction),
            "patience": int(patience),
            "clip_norm": float(clip_norm),
            "jitter": float(jitter),
            "seed": int(seed),
            "first_member": int(first_member),
            "time_limit": None if time_limit is None else float(time_limit),
            "data_sha256": hashlib.sha256(y.numpy().tobytes()).hexdigest(),
        }
        if not 0 < validation_fraction < 1:
            raise ValueError("validation_fraction must lie in (0, 1)")
        if not jitter >= 0:
            raise ValueError(f"jitter must be >= 0, got {jitter!r}")
        if int(first_member) != first_member or first_member < 0:
            raise ValueError(f"first_member must be >= 0, got {first_member!r}")
        with torch_threads(threads):
            _Trainer(self, y, settings, checkpoint_dir, progress, process_group).run()
        return self

    # ----------------------------------------------------------- evaluation

    def _require_fitted(self) -> tuple[Flow, Standardizer]:
        if self.flow is None or self.standardizer is None:
            raise RuntimeError("this FlowEnsemble is not fitted; call fit() or load()")
        return self.flow, self.standardizer

    def _log_prob_y(self, y: torch.Tensor) -> torch.Tensor:
        """Ensemble ln f at points ``y`` (N, 6) on the model's device and dtype."""
        flow, scaler = self._require_fitted()
        s = scaler.transform(y)
        member = flow.log_prob(s)
        mixture = torch.logsumexp(member, dim=0) - math.log(flow.n_members)
        return mixture + scaler.log_abs_det_jacobian(y)

    def _batches(self, y: torch.Tensor, batch_size: int | None) -> list:
        rows = int(batch_size or max(256, _EVAL_POINTS // self.n_flows))
        return list(torch.split(y, rows))

    def log_prob(
        self,
        x: np.ndarray | torch.Tensor,
        v: np.ndarray | torch.Tensor,
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        r"""Ensemble :math:`\ln f(x, v) = \ln \frac{1}{K}\sum_k f_k(x, v)`.

        Parameters
        ----------
        x, v : array or :class:`torch.Tensor`, shape (N, 3)
            Positions and velocities in the units of the training data.
        batch_size : int, optional
            Points per evaluation chunk; the default bounds memory.

        Returns
        -------
        log_f : :class:`torch.Tensor`, shape (N,)
            On the model's device, float32, without gradient; normalised
            over phase space in the caller's units.
        """
        y = self._points(x, v)
        with torch.no_grad():
            return torch.cat(
                [self._log_prob_y(c) for c in self._batches(y, batch_size)]
            )

    def grad_log_prob(
        self,
        x: np.ndarray | torch.Tensor,
        v: np.ndarray | torch.Tensor,
        *,
        batch_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Gradients :math:`(\nabla_x \ln f, \nabla_v \ln f)` of the ensemble DF.

        Evaluated by autograd through the flows and the standardizer's
        Jacobian, in chunks so that memory stays bounded for any N.

        Parameters
        ----------
        x, v : array or :class:`torch.Tensor`, shape (N, 3)
            Positions and velocities in the units of the training data.
        batch_size : int, optional
            Points per chunk.

        Returns
        -------
        grad_x, grad_v : :class:`torch.Tensor`, shape (N, 3)
            [1/length] and [time/length], on the model's device, float32.
        """
        y = self._points(x, v)
        out = []
        for chunk in self._batches(y, batch_size):
            chunk = chunk.detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self._log_prob_y(chunk).sum(), chunk)
            out.append(grad)
        grad = torch.cat(out)
        return grad[:, :3], grad[:, 3:]

    def _points(
        self, x: np.ndarray | torch.Tensor, v: np.ndarray | torch.Tensor
    ) -> torch.Tensor:
        """Validate ``x``, ``v`` (N, 3) and stack them on the model's device/dtype."""
        flow, _ = self._require_fitted()
        param = next(flow.parameters())
        parts = []
        for name, value in (("x", x), ("v", v)):
            t = torch.as_tensor(value).to(device=param.device, dtype=param.dtype)
            if t.ndim != 2 or t.shape[1] != 3:
                raise ValueError(f"{name} must be shaped (N, 3), got {tuple(t.shape)}")
            parts.append(t)
        if parts[0].shape[0] != parts[1].shape[0]:
            raise ValueError(
                f"x and v hold different numbers of points "
                f"({parts[0].shape[0]} and {parts[1].shape[0]})"
            )
        y = torch.cat(parts, dim=1)
        if not bool(torch.isfinite(y).all()):
            raise ValueError("x and v must be finite (found NaN or inf)")
        return y

    def sample(
        self, n: int, *, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points from the mixture :math:`f = \\frac{1}{K}\\sum_k f_k`.

        Each point picks a member uniformly at random, then is drawn from it.

        Parameters
        ----------
        n : int
            Number of points.
        seed : int, optional
            Seed; the same seed gives the same points on the same device.

        Returns
        -------
        x, v : :class:`torch.Tensor`, shape (n, 3)
            Positions and velocities in the units of the training data, on
            the model's device, float32.
        """
        flow, scaler = self._require_fitted()
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        n = int(n)
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        member = torch.randint(self.n_flows, (n,), generator=generator)
        counts = torch.bincount(member, minlength=self.n_flows).tolist()
        drawn: list[list[torch.Tensor]] = [[] for _ in counts]
        rows = max(256, _EVAL_POINTS // self.n_flows)
        with torch.no_grad():
            for start in range(0, max(counts, default=0), rows):
                size = min(rows, max(counts) - start)
                s = flow.sample(size, generator).to("cpu", torch.float64)
                for k, count in enumerate(counts):
                    drawn[k].append(s[k, : max(0, min(size, count - start))])
        s = torch.empty(n, 6, dtype=torch.float64)
        for k, pieces in enumerate(drawn):
            if pieces:
                s[member == k] = torch.cat(pieces)
        y = scaler.inverse(s).to(next(flow.parameters()))
        return y[:, :3].contiguous(), y[:, 3:].contiguous()

    # --------------------------------------------------- members, save/load

    def member(self, index: int) -> FlowEnsemble:
        """Member ``index`` on its own, as a one-flow :class:`FlowEnsemble` (a copy)."""
        if not -self.n_flows <= index < self.n_flows:
            raise IndexError(f"member {index} out of range for {self.n_flows} flows")
        return self.select([index % self.n_flows])

    def select(self, members: list[int] | range) -> FlowEnsemble:
        """Some members, in the given order, as a new :class:`FlowEnsemble` (a copy).

        Parameters
        ----------
        members : sequence of int
            Indices in ``[0, K)``; repeats are allowed.

        Returns
        -------
        ensemble : :class:`FlowEnsemble`
            With the same standardizer, and the history of those members.
        """
        flow, scaler = self._require_fitted()
        members = [int(k) for k in members]
        if not members or not all(0 <= k < self.n_flows for k in members):
            raise IndexError(
                f"members must be a non-empty list of indices in [0, {self.n_flows})"
                f", got {members}"
            )
        out = FlowEnsemble(
            **{**self.config, "n_flows": len(members)}, device=self.device
        )
        out.flow = flow.select(members)
        out.standardizer = scaler
        out.history = {
            key: (
                [[row[k] for k in members] for row in rows]
                if key in _PER_MEMBER_ROWS
                else [rows[k] for k in members]
                if key == "best_epoch"
                else list(rows)
            )
            for key, rows in self.history.items()
        }
        return out

    @classmethod
    def concatenate(cls, ensembles: list[FlowEnsemble]) -> FlowEnsemble:
        """Join fitted ensembles' members, in order, into one ensemble.

        The ensembles must share the architecture and the standardizer, as
        shards of one fit do (``fit(..., first_member=...)`` with the same
        data and seed), and must have trained for the same epochs. The
        history keeps each member's curves; ``wall_s`` is the slowest
        shard's.

        Parameters
        ----------
        ensembles : list of :class:`FlowEnsemble`

        Returns
        -------
        ensemble : :class:`FlowEnsemble`
            On the device of the first.

        Raises
        ------
        ValueError
            If the ensembles differ in architecture, standardizer or epochs.
        """
        if not ensembles:
            raise ValueError("concatenate needs at least one ensemble")
        fitted = [e._require_fitted() for e in ensembles]
        first = ensembles[0]
        scaler = fitted[0][1]
        for other in ensembles[1:]:
            if other._require_fitted()[1].to_dict() != scaler.to_dict():
                raise ValueError(
                    "cannot concatenate ensembles with different standardizers: "
                    "fit the shards to the same data with the same seed"
                )
            if other.history["epoch"] != first.history["epoch"]:
                raise ValueError(
                    "cannot concatenate ensembles trained for different epochs "
                    f"({len(first.history['epoch'])} and "
                    f"{len(other.history['epoch'])})"
                )
        flow = type(fitted[0][0]).concatenate([f for f, _ in fitted])
        out = cls(**{**first.config, "n_flows": flow.n_members}, device=first.device)
        out.flow = flow.to(first.device)
        out.standardizer = scaler
        histories = [e.history for e in ensembles]
        out.history = {
            "epoch": list(first.history["epoch"]),
            "lr": list(first.history["lr"]),
            "wall_s": [
                max(row) for row in zip(*(h["wall_s"] for h in histories), strict=True)
            ],
            **{
                key: [
                    [value for row in rows for value in row]
                    for rows in zip(*(h[key] for h in histories), strict=True)
                ]
                for key in _PER_MEMBER_ROWS
            },
        }
        if all("best_epoch" in h for h in histories):
            out.history["best_epoch"] = [e for h in histories for e in h["best_epoch"]]
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ensemble to a safe model file (see :mod:`gala_deeppotential.io`).

        Returns
        -------
        path : :class:`pathlib.Path`
        """
        flow, scaler = self._require_fitted()
        return io.save(
            path,
            kind=_KIND,
            tensors=flow.state_dict(),
            metadata={
                "config": self.config,
                "standardizer": scaler.to_dict(),
                "history": self.history,
            },
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, device: str | torch.device = "cpu"
    ) -> FlowEnsemble:
        """Read an ensemble written by :meth:`save`; ``log_prob`` is unchanged."""
        out = cls(**io.load(path, kind=_KIND)[1]["config"], device=device)
        tensors, meta = io.load(path, kind=_KIND, device=str(out.device))
        out.flow = out._build(seed=0)
        out.flow.load_state_dict(tensors)
        out.standardizer = Standardizer.from_dict(meta["standardizer"])
        out.history = meta["history"]
        return out


def fit_distribution_function(
    data: np.ndarray | torch.Tensor,
    n_flows: int = DEFAULT_N_FLOWS,
    *,
    n_steps: int = 4,
    n_bins: int = 8,
    hidden_features: int = 64,
    n_hidden_layers: int = 2,
    tail_bound: float = 5.0,
    activation: str = "silu",
    asinh_axes: tuple[int, ...] = (0, 1, 2),
    factorization: str = "joint",
    device: str | torch.device = "cpu",
    **fit_options: Any,
) -> FlowEnsemble:
    """Fit a :class:`FlowEnsemble` to a phase-space sample in one call.

    Parameters
    ----------
    data : array or :class:`torch.Tensor`, shape (N, 6)
        Positions then velocities in any consistent units.
    n_flows, n_steps, n_bins, hidden_features, n_hidden_layers, tail_bound, \
activation, asinh_axes, factorization, device
        The model; see :class:`FlowEnsemble`.
    **fit_options
        Passed to :meth:`FlowEnsemble.fit` (``epochs``, ``seed``,
        ``checkpoint_dir``, ...).

    Returns
    -------
    df : :class:`FlowEnsemble`
    """
    ensemble = FlowEnsemble(
        n_flows,
        n_steps=n_steps,
        n_bins=n_bins,
        hidden_features=hidden_features,
        n_hidden_layers=n_hidden_layers,
        tail_bound=tail_bound,
        activation=activation,
        asinh_axes=asinh_axes,
        factorization=factorization,
        device=device,
    )
    return ensemble.fit(data, **fit_options)


class _Trainer:
    """One fit of a :class:`FlowEnsemble`: state, checkpoints and the loop.

    Member k (global index ``first_member + k``) draws its initial weights and
    its minibatch order from its own generators, and is judged for early
    stopping on its own, so what it learns does not depend on the other
    members of its batch.
    """

    def __init__(
        self,
        ensemble: FlowEnsemble,
        y: torch.Tensor,
        settings: dict[str, Any],
        checkpoint_dir: str | os.PathLike | None,
        progress: bool,
        process_group: Any,
    ) -> None:
        self.ensemble = ensemble
        self.settings = settings
        self.progress = progress
        self.process_group = process_group
        self.path = None if checkpoint_dir is None else Path(checkpoint_dir)
        device = ensemble.device
        seed, first = settings["seed"], settings["first_member"]
        n_val = max(1, round(settings["validation_fraction"] * len(y)))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        y_val, y_train = y[order[:n_val]], y[order[n_val:]]
        self.scaler = Standardizer.fit(y_train, ensemble.config["asinh_axes"])
        # Losses are reported in the caller's units: -<ln f> = -<ln p(s)> - <ln|J|>.
        self.offset_train = float(self.scaler.log_abs_det_jacobian(y_train).mean())
        self.offset_val = float(self.scaler.log_abs_det_jacobian(y_val).mean())
        self.s_train = self.scaler.transform(y_train).to(device, torch.float32)
        self.s_val = self.scaler.transform(y_val).to(device, torch.float32)
        self.flow = ensemble._build(seed, first)
        self.keys = sorted(self.flow.member_keys())
        self.optimizer = torch.optim.RAdam(self.flow.parameters(), lr=settings["lr"])
        self.batch = min(settings["batch_size"], len(y_train))
        self.steps_per_epoch = len(y_train) // self.batch
        self.total_steps = settings["epochs"] * self.steps_per_epoch
        k = ensemble.n_flows
        self.generators = [
            member_generator(seed, first + i, _BATCH_STREAM) for i in range(k)
        ]
        self.epoch = 0
        self.step = 0
        self.elapsed = 0.0
        self.finished = False
        self.best_val = torch.full((k,), math.inf)
        self.best_epoch = torch.zeros(k, dtype=torch.long)
        self.since_best = torch.zeros(k, dtype=torch.long)
        self.best = {name: self.flow.state_dict()[name].clone() for name in self.keys}
        self.history = _empty_history()

    # Checkpoints hold everything the loop reads, so a resumed fit is
    # bit-identical to an uninterrupted one.
    def _save(self) -> None:
        if self.path is None:
            return
        tensors = {f"flow.{k}": v for k, v in self.flow.state_dict().items()}
        tensors.update({f"best.{k}": v for k, v in self.best.items()})
        for i, state in self.optimizer.state_dict()["state"].items():
            tensors.update({f"optim.{i}.{key}": val for key, val in state.items()})
        tensors["rng"] = torch.stack([g.get_state() for g in self.generators])
        tensors["best_val"] = self.best_val
        tensors["best_epoch"] = self.best_epoch
        tensors["since_best"] = self.since_best
        io.save(
            self.path / _CHECKPOINT_FILE,
            kind=_CHECKPOINT_KIND,
            tensors=tensors,
            metadata={
                "config": self.ensemble.config,
                "settings": self.settings,
                "epoch": self.epoch,
                "step": self.step,
                "elapsed": self.elapsed,
                "finished": self.finished,
                "history": self.history,
            },
        )

    def _resume(self) -> None:
        if self.path is None or not (self.path / _CHECKPOINT_FILE).is_file():
            return
        tensors, meta = io.load(
            self.path / _CHECKPOINT_FILE,
            kind=_CHECKPOINT_KIND,
            device=str(self.ensemble.device),
        )
        if meta["config"] != self.ensemble.config or meta["settings"] != self.settings:
            raise ValueError(
                f"{self.path} holds a checkpoint of a different fit (other data, "
                "model or settings); pass a fresh checkpoint_dir or delete it"
            )
        self.flow.load_state_dict(
            {k[5:]: v for k, v in tensors.items() if k.startswith("flow.")}
        )
        self.best = {k: tensors[f"best.{k}"] for k in self.keys}
        optim = self.optimizer.state_dict()
        optim["state"] = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, i, key = name.split(".", 2)
                optim["state"].setdefault(int(i), {})[key] = value
        self.optimizer.load_state_dict(optim)
        for generator, state in zip(self.generators, tensors["rng"].cpu(), strict=True):
            generator.set_state(state.clone())
        self.best_val = tensors["best_val"].cpu()
        self.best_epoch = tensors["best_epoch"].cpu()
        self.since_best = tensors["since_best"].cpu()
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.elapsed, self.finished = meta["elapsed"], meta["finished"]
        self.history = meta["history"]

    def _learning_rate(self, start: float) -> float | None:
        """Warm-up then cosine decay; None once the step or time budget is spent."""
        frac = (self.step + 1) / self.total_steps
        limit = self.settings["time_limit"]
        if limit is not None:
            frac = max(frac, (time.perf_counter() - start) / limit)
        if frac > 1:
            return None
        warmup = self.settings["warmup_fraction"]
        warm = min(1.0, frac / warmup) if warmup > 0 else 1.0
        return self.settings["lr"] * warm * 0.5 * (1 + math.cos(math.pi * frac))

    def _clip(self) -> None:
        """Clip each member's gradient norm separately: members are independent."""
        grads = [p.grad for p in self.flow.parameters()]
        norm = torch.stack([g.square().flatten(1).sum(1) for g in grads]).sum(0).sqrt()
        factor = (self.settings["clip_norm"] / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor.view(-1, *[1] * (g.ndim - 1)))

    def _validation_loss(self) -> torch.Tensor:
        total = torch.zeros(self.ensemble.n_flows, device=self.s_val.device)
        with torch.no_grad():
            for chunk in torch.split(self.s_val, _VALIDATION_ROWS):
                # Pad to whole vectors, so that no member's rows fall in the
                # ragged end of an array (see flows._SplineCoupling).
                rows = len(chunk)
                padded = torch.cat(
                    [chunk, chunk.new_zeros(-rows % _ROW_MULTIPLE, chunk.shape[1])]
                )
                total -= self.flow.log_prob(padded)[:, :rows].sum(dim=1)
        return (total / len(self.s_val)).cpu()

    def _epoch(self, start: float) -> bool:
        """Train one epoch and validate; return False if the budget ran out."""
        device = self.s_train.device
        n_train = len(self.s_train)
        order = torch.stack(
            [torch.randperm(n_train, generator=g) for g in self.generators]
        ).to(device)
        jitter = self.settings["jitter"]
        if jitter:
            # One draw per member and epoch, from the member's own stream,
            # moved once: the members stay independent and reproducible.
            noise = torch.stack(
                [torch.randn(self.s_train.shape, generator=g) for g in self.generators]
            ).to(device)
            noise *= jitter
        loss_sum = torch.zeros(self.ensemble.n_flows, device=device)
        done = 0
        lr = None
        # No host round trip per step (no .item(), no bool() of a tensor):
        # on a GPU the loop only queues kernels.
        for j in range(self.steps_per_epoch):
            lr = self._learning_rate(start)
            if lr is None:
                break
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            rows = order[:, j * self.batch : (j + 1) * self.batch]
            batch = self.s_train[rows]
            if jitter:
                batch = batch + noise.gather(1, rows[..., None].expand_as(batch))
            nll = -self.flow.log_prob(batch).mean(dim=1)
            self.optimizer.zero_grad()
            nll.sum().backward()
            self._clip()
            self.optimizer.step()
            loss_sum += nll.detach()
            done += 1
            self.step += 1
            if self.bar is not None:
                self.bar.update()
        if done == 0:
            return False
        # A NaN or inf loss poisons the weights, so it shows in the sum.
        train_loss = loss_sum.cpu() / done
        if not bool(torch.isfinite(train_loss).all()):
            raise FloatingPointError(
                f"the training loss became {train_loss.tolist()} (per member) in "
                f"epoch {self.epoch + 1}; lower lr or clip_norm"
            )
        self.epoch += 1
        val = self._validation_loss()
        # Members whose patience has run out keep their best weights.
        active = self.since_best < self.settings["patience"]
        improved = active & (val < self.best_val)
        state = self.flow.state_dict()
        on_device = improved.to(device)
        for name in self.keys:
            self.best[name][on_device] = state[name][on_device]
        self.best_val = torch.where(improved, val, self.best_val)
        self.best_epoch = torch.where(improved, self.epoch, self.best_epoch)
        self.since_best = torch.where(improved, 0, self.since_best + 1)
        history = self.history
        history["epoch"].append(self.epoch)
        history["train_loss"].append((train_loss - self.offset_train).tolist())
        history["val_loss"].append((val - self.offset_val).tolist())
        history["lr"].append(lr if lr is not None else 0.0)
        history["wall_s"].append(time.perf_counter() - start)
        if self.bar is not None:
            self.bar.set_postfix(val_loss=f"{float(val.mean()) - self.offset_val:.4f}")
        return done == self.steps_per_epoch

    def _all_finished(self) -> bool:
        """Whether this fit is finished here and on every rank of the group."""
        if self.process_group is None:
            return self.finished
        import torch.distributed as dist

        # NCCL reduces only CUDA tensors; gloo takes CPU ones.
        device = (
            self.ensemble.device
            if dist.get_backend(self.process_group) == "nccl"
            else "cpu"
        )
        running = torch.tensor([0 if self.finished else 1], device=device)
        dist.all_reduce(running, group=self.process_group)
        return int(running) == 0

    def run(self) -> None:
        self._resume()
        self.bar = None
        if self.progress and not self.finished:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total_steps, initial=self.step, desc="flows", unit="step"
            )
        start = time.perf_counter() - self.elapsed
        try:
            # A shard that is done here trains on while other ranks are not:
            # a shard whose members have all stopped keeps training them
            # (their best weights are final), just as one process training
            # every member would; a shard out of epochs or time does nothing.
            while not self._all_finished():
                in_budget = self._epoch(start)
                self.elapsed = time.perf_counter() - start
                patience_out = bool(
                    (self.since_best >= self.settings["patience"]).all()
                )
                self.finished = (
                    not in_budget
                    or patience_out
                    or self.epoch >= self.settings["epochs"]
                )
                self._save()
        except KeyboardInterrupt as err:
            if self.path is not None:
                err.add_note(
                    f"flow training stopped at epoch {self.epoch}; call fit() again "
                    f"with checkpoint_dir={str(self.path)!r} to resume"
                )
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
        state = self.flow.state_dict()
        state.update(self.best)
        self.flow.load_state_dict(state)
        self.history["best_epoch"] = self.best_epoch.tolist()
        self.ensemble.flow = self.flow
        self.ensemble.standardizer = self.scaler
        self.ensemble.history = self.history


# History entries that hold one row per epoch of K per-member values.
_PER_MEMBER_ROWS = ("train_loss", "val_loss")


def _empty_history() -> dict[str, list]:
    return {"epoch": [], "train_loss": [], "val_loss": [], "lr": [], "wall_s": []}


def _as_phase_space(data: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate an (N, 6) sample and return it as a float64 CPU tensor."""
    if isinstance(data, torch.Tensor):
        y = data.detach().to("cpu", torch.float64)
    else:
        y = torch.as_tensor(np.asarray(data, dtype=np.float64))
    if y.ndim != 2 or y.shape[1] != 6:
        raise ValueError(
            "data must be an (N, 6) array of positions then velocities "
            f"(x, y, z, v_x, v_y, v_z); got shape {tuple(y.shape)}"
        )
    bad = (~torch.isfinite(y).all(dim=1)).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"{len(bad)} rows of data hold NaN or inf (rows {bad[:5].tolist()}"
            f"{', ...' if len(bad) > 5 else ''}); drop them before fitting"
        )
    if len(y) < MIN_STARS:
        raise ValueError(
            f"{len(y)} stars are too few to fit a distribution function; "
            f"at least {MIN_STARS} are needed (see gala_deeppotential.df.MIN_STARS)"
        )
    return y
