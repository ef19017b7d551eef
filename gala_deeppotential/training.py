"""Training the flow ensemble: the maximum-likelihood loop, checkpoints.

Its options, :class:`TrainingOptions` and :class:`DFOptions`, and the choices
made from the stars (:func:`epochs_for`, :func:`truncation_for`) live in
:mod:`gala_deeppotential.training_options` and are imported here.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_EPOCHS",
    "LOCAL_EPOCHS",
    "DFOptions",
    "TrainingOptions",
    "epochs_for",
    "fit_distribution_function",
    "train_flows",
    "truncation_for",
]

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import io
from .ball_map import BallMap
from .df import FlowEnsemble, empty_history, phase_space_tensor
from .flows import ROW_MULTIPLE
from .likelihood import VALIDATION_ROWS, StarLikelihood
from .options import options_dict, resolve_options
from .runtime import member_generator, torch_threads
from .training_options import (
    DEFAULT_EPOCHS,
    LOCAL_EPOCHS,
    DFOptions,
    TrainingOptions,
    epochs_for,
    truncation_for,
)
from .truncation import SelectionNormalizer

if TYPE_CHECKING:
    from .deconvolution import NoisyAstrometry

_CHECKPOINT_KIND = "flow_ensemble_checkpoint"
_CHECKPOINT_FILE = "checkpoint.pt"
# Stream of runtime.member_generator that shuffles a member's minibatches
# (flows.INIT_STREAM draws its initial weights).
_BATCH_STREAM = 1


def _ball_for(
    ensemble: FlowEnsemble,
    options: TrainingOptions,
    noisy: Any,
    ball: BallMap | None,
) -> BallMap | None:
    """The ball the flows map the positions through, or None (see
    :class:`~gala_deeppotential.df.FlowOptions` ``ball_map``)."""
    if not ensemble.options.ball_map:
        return None
    reason = None
    if ball is None:
        reason = "no ball was given (fit with a selection that has a distance limit)"
    elif noisy is not None and bool(getattr(noisy, "has_errors", False)):
        reason = "measurement errors are deconvolved, so true positions cross its edge"
    elif options.truncated:
        reason = "the truncated likelihood models the DF beyond the selection's edges"
    if reason is not None:
        raise ValueError(f"ball_map=True, but {reason}; set ball_map=False")
    return ball


def fit_distribution_function(
    data: np.ndarray | torch.Tensor,
    options: DFOptions | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    noisy: Any = None,
    selection: Callable[[np.ndarray], np.ndarray] | None = None,
    ball: BallMap | None = None,
    **overrides: Any,
) -> FlowEnsemble:
    """Fit a :class:`~gala_deeppotential.FlowEnsemble` to a phase-space sample.

    Parameters
    ----------
    data : array or :class:`torch.Tensor`, shape (N, 6)
        Positions then velocities in any consistent units; at least
        :data:`~gala_deeppotential.df.MIN_STARS` rows.
    options : :class:`DFOptions` or dict, optional
        The architecture and training; the defaults are the measured ones.
    seed, device, threads, progress, checkpoint_dir, noisy, selection, ball
        As for :func:`train_flows`; ``device`` is where the ensemble lives.
    **overrides
        Fields of :class:`DFOptions` (``n_flows=8``, ``epochs=30``, ...).

    Returns
    -------
    df : :class:`~gala_deeppotential.FlowEnsemble`

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = fit_distribution_function(rng.normal(size=(2000, 6)), n_flows=2, epochs=1)
    >>> df.n_flows
    2
    """
    options = resolve_options(DFOptions, options, **overrides)
    return train_flows(
        FlowEnsemble(options, device=device),
        data,
        options,
        seed=seed,
        threads=threads,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        noisy=noisy,
        selection=selection,
        ball=ball,
    )


def train_flows(
    ensemble: FlowEnsemble,
    data: np.ndarray | torch.Tensor,
    options: TrainingOptions | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    first_member: int = 0,
    threads: int | None = None,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    process_group: Any = None,
    noisy: NoisyAstrometry | None = None,
    selection: Callable[[np.ndarray], np.ndarray] | None = None,
    ball: BallMap | None = None,
    **overrides: Any,
) -> FlowEnsemble:
    r"""Fit every member of ``ensemble`` to a phase-space sample by maximum likelihood.

    Each member minimises :math:`-\langle \ln p_k(s) \rangle` over its own
    shuffled minibatches of the same training stars, with Rectified Adam
    (Liu et al. 2019; :class:`torch.optim.RAdam`), a linear warm-up then
    cosine decay of the learning rate, and its gradient norm clipped
    separately. After each epoch the held-out validation loss is computed per
    member; a member whose loss has not improved for ``patience`` epochs has
    stopped: its best weights are final, even while the batch trains on for
    the others, and at the end every member gets back its best weights.
    With the truncated likelihood (``truncated``) the validation loss holds a
    Monte Carlo estimate of :math:`\ln Z` that scatters more between epochs
    than the late epochs gain, so there every member trains to the end of
    the schedule and keeps its final weights.

    A member's training depends only on the data, ``seed`` and its global
    index ``first_member + k``: the validation split and the
    :class:`~gala_deeppotential.standardizer.Standardizer` come from ``seed``
    and the data, shared by all members, while each member's initial weights
    and minibatch order come from its own generator
    (:func:`~gala_deeppotential.runtime.member_generator`). So members fitted
    in shards (``first_member``) are the members of one fit of the whole
    ensemble, and :meth:`~gala_deeppotential.FlowEnsemble.concatenate` joins
    them (see :mod:`gala_deeppotential.distributed`).

    Parameters
    ----------
    ensemble : :class:`~gala_deeppotential.FlowEnsemble`
        The model to train, in place; its members start afresh.
    data : array or :class:`torch.Tensor`, shape (N, 6)
        Positions then velocities, :math:`(x, y, z, v_x, v_y, v_z)`, in
        any consistent units; at least
        :data:`~gala_deeppotential.df.MIN_STARS` rows. A star without a
        radial velocity has NaN velocities: it informs the positions'
        density, and its tangential velocity when ``noisy`` gives its
        proper motions, which needs members that factorize as
        :math:`p(x)\,p(v \mid x)` (``factorization="conditional"``).
        Radial velocities must be missing independently of the velocities.
    options : :class:`TrainingOptions` or dict, optional
        The training settings.
    seed : int
        Seeds the split, the initial weights and the minibatches: on the
        CPU with the same ``threads``, the same seed gives bit-identical
        members.
    first_member : int
        Global index of this ensemble's first member, when it is a shard of
        a larger ensemble: member k is trained as member
        ``first_member + k`` of a fit of all members with this seed; on the
        CPU bit for bit when ``batch_size`` is a multiple of 16 (whole
        float32 vectors, so no member's rows fall in an array's ragged end);
        otherwise they differ by float32 rounding, which training can
        amplify.
    threads : int, optional
        Torch intra-op threads while fitting (restored afterwards).
    progress : bool
        Show a tqdm progress bar.
    checkpoint_dir : str or path-like, optional
        Write the full training state there after every epoch. If it
        already holds a checkpoint of this same fit (same data, settings and
        seed), training resumes from it instead of starting over, so an
        interrupted fit (Ctrl-C, a kill, a crash) loses at most one epoch; a
        finished one returns at once.
    process_group : :class:`torch.distributed.ProcessGroup`, optional
        When this fit is one rank's shard of a distributed fit: after every
        epoch the ranks agree (one ``all_reduce``) whether all of them are
        done, so every shard trains for as many epochs as one fit of the
        whole ensemble would.
    noisy : NoisyAstrometry or MissingRadialVelocities, optional
        The stars' measured astrometry and errors, row for row with ``data``
        (its point estimates): the members then maximise the
        error-convolved likelihood, by ``error_samples`` Monte Carlo draws
        per star and step, which deconvolves the DF
        (:class:`~gala_deeppotential.deconvolution.NoisyAstrometry`). Or,
        for exact astrometry
        (:class:`~gala_deeppotential.sightlines.MissingRadialVelocities`),
        the stars without a radial velocity as draws of their full
        velocity (``rv_samples`` per star and step). The losses in
        ``history`` are then :math:`-\langle \ln p(\hat o) \rangle` of
        the measurements, up to a constant per star.
    selection : callable, optional
        The selection function the stars were seen through, :math:`S` at
        positions ``(N, 3)`` in the data's units (numpy in and out; for
        example :meth:`~gala_deeppotential.selection.BoundSelection.completeness`).
        Used with ``truncated=True`` (else ignored); the losses in
        ``history`` then include :math:`\ln \int f S`.
    ball : :class:`~gala_deeppotential.ball_map.BallMap`, optional
        The ball every star lies in (a catalogue's distance limit, in the
        data's units), which the flows see the positions through with
        ``ball_map=True`` (see :class:`~gala_deeppotential.df.FlowOptions`).
    **overrides
        Fields of :class:`TrainingOptions` (``epochs=30``, ...).

    Returns
    -------
    ensemble : :class:`~gala_deeppotential.FlowEnsemble`
        The same object, fitted.

    Raises
    ------
    ValueError
        For bad data (see :data:`~gala_deeppotential.df.MIN_STARS`), or a
        checkpoint of a different fit in ``checkpoint_dir``.
    FloatingPointError
        If the loss becomes NaN or infinite (lower ``lr``).
    """
    options = truncation_for(
        resolve_options(TrainingOptions, options, **overrides),
        noisy,
        selection,
        ball_map=ensemble.options.ball_map,
    )
    y = phase_space_tensor(data, missing_velocities=True)
    options = epochs_for(options, y[:, :3].numpy(), noisy)
    if int(first_member) != first_member or first_member < 0:
        raise ValueError(f"first_member must be >= 0, got {first_member!r}")
    settings = {
        **options_dict(options),
        "seed": int(seed),
        "first_member": int(first_member),
        "data_sha256": hashlib.sha256(y.numpy().tobytes()).hexdigest(),
    }
    if noisy is not None:
        if len(noisy) != len(y):
            raise ValueError(
                f"noisy holds {len(noisy)} stars but data {len(y)}; pass the "
                "point estimates of the same stars"
            )
        settings["astrometry_sha256"] = noisy.sha256
    ball = _ball_for(ensemble, options, noisy, ball)
    if ball is not None:
        settings["ball"] = ball.to_dict()
    if not options.truncated:
        selection = None
    with torch_threads(threads):
        FlowTrainer(
            ensemble,
            y,
            settings,
            checkpoint_dir,
            progress,
            process_group,
            noisy,
            selection,
        ).run()
    return ensemble


class FlowTrainer:
    """One fit of a :class:`~gala_deeppotential.FlowEnsemble`: state, checkpoints, loop.

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
        noisy: NoisyAstrometry | None = None,
        selection: Callable[[np.ndarray], np.ndarray] | None = None,
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
        ball = settings.get("ball")
        self.scaler = ensemble.fit_standardizer(
            y_train, None if ball is None else BallMap.from_dict(ball)
        )
        self.flow = ensemble.build_flow(seed, first)
        self.normalizer = None
        if selection is not None:
            self.normalizer = SelectionNormalizer(
                selection,
                self.flow,
                self.scaler,
                settings["selection_draws"],
                seed,
                first,
            )
        self.stars = None
        if noisy is not None or not bool(torch.isfinite(y).all()):
            # Missing radial velocities or measurement errors: every star's
            # likelihood is evaluated afresh at each step (StarLikelihood).
            self.stars = StarLikelihood(
                self.flow,
                self.scaler,
                y,
                order,
                n_val,
                noisy,
                settings,
                device,
                None if self.normalizer is None else self.normalizer.completeness,
            )
            self.offset_train = self.offset_val = 0.0
            self.s_train = torch.empty(len(y) - n_val, 0, device=device)
            self.s_val = torch.empty(n_val, 0, device=device)
        else:
            # Losses are reported in the caller's units:
            # -<ln f> = -<ln p(s)> - <ln|J|>.
            self.offset_train = float(self.scaler.log_abs_det_jacobian(y_train).mean())
            self.offset_val = float(self.scaler.log_abs_det_jacobian(y_val).mean())
            self.s_train = self.scaler.transform(y_train).to(device, torch.float32)
            self.s_val = self.scaler.transform(y_val).to(device, torch.float32)
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
        self.history = empty_history()

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

    def _validation_loss(self) -> torch.Tensor:
        log_z = 0.0 if self.normalizer is None else self.normalizer.validation()
        return self._data_validation_loss() + log_z

    def _data_validation_loss(self) -> torch.Tensor:
        if self.stars is not None:
            return self.stars.validation_loss()
        total = torch.zeros(self.ensemble.n_flows, device=self.s_val.device)
        with torch.no_grad():
            for chunk in torch.split(self.s_val, VALIDATION_ROWS):
                # Pad to whole vectors, so that no member's rows fall in the
                # ragged end of an array (see flows._SplineCoupling).
                rows = len(chunk)
                padded = torch.cat(
                    [chunk, chunk.new_zeros(-rows % ROW_MULTIPLE, chunk.shape[1])]
                )
                total -= self.flow.log_prob(padded)[:, :rows].sum(dim=1)
        return (total / len(self.s_val)).cpu()

    def _epoch(self, start: float) -> bool:
        """Train one epoch and validate; return False if the budget ran out."""
        device = self.s_train.device
        jitter = self.settings["jitter"] if self.stars is None else 0.0
        order, noise = _epoch_draws(self.generators, self.s_train, jitter)
        error_epochs = self.settings["error_epochs"]
        deconvolve = (
            error_epochs is None or self.epoch >= self.settings["epochs"] - error_epochs
        )
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
            if self.stars is not None:
                nll = self.stars.train_loss(rows, self.generators, deconvolve)
            else:
                batch = self.s_train[rows]
                if jitter:
                    batch = batch + noise.gather(1, rows[..., None].expand_as(batch))
                nll = -self.flow.log_prob(batch).mean(dim=1)
            if self.normalizer is not None:
                nll = nll + self.normalizer.loss_term(self.generators)
            self.optimizer.zero_grad()
            nll.sum().backward()
            _clip_per_member(self.flow, self.settings["clip_norm"])
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
        # Members whose patience has run out keep their best weights. The
        # truncated likelihood's validation loss holds a Monte Carlo ln Z
        # whose scatter between epochs (about 0.01 for Z near 0.15) exceeds
        # the late epochs' gains, so there every member keeps training to
        # the end of its schedule and its final weights are kept.
        active = self.since_best < self.settings["patience"]
        improved = active & (val < self.best_val)
        if self.normalizer is not None:
            improved = torch.ones_like(improved)
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
            while not _all_ranks_finished(
                self.finished, self.process_group, self.ensemble.device
            ):
                in_budget = _checked_epoch(self, start)
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


def _checked_epoch(trainer: FlowTrainer, start: float) -> bool:
    """``trainer._epoch(start)``, with NaN or infinite weights reported as
    such: they make the splines fail mid-epoch, before the epoch's loss is
    checked."""
    try:
        return trainer._epoch(start)
    except RuntimeError as err:
        if all(bool(torch.isfinite(p).all()) for p in trainer.flow.parameters()):
            raise
        raise FloatingPointError(
            f"the flows' weights became NaN or infinite in epoch "
            f"{trainer.epoch + 1}; lower lr or clip_norm"
        ) from err


def _epoch_draws(
    generators: list[torch.Generator], s_train: torch.Tensor, jitter: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each member's batch order for one epoch and, with ``jitter``, its noise.

    One draw per member and epoch, from the member's own stream, moved to the
    device once: the members stay independent and reproducible.
    """
    order = torch.stack(
        [torch.randperm(len(s_train), generator=g) for g in generators]
    ).to(s_train.device)
    if not jitter:
        return order, None
    noise = torch.stack([torch.randn(s_train.shape, generator=g) for g in generators])
    return order, noise.to(s_train.device) * jitter


def _clip_per_member(flow: torch.nn.Module, clip_norm: float) -> None:
    """Clip each member's gradient norm separately: members are independent."""
    grads = [p.grad for p in flow.parameters()]
    norm = torch.stack([g.square().flatten(1).sum(1) for g in grads]).sum(0).sqrt()
    factor = (clip_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor.view(-1, *[1] * (g.ndim - 1)))


def _all_ranks_finished(finished: bool, process_group: Any, device: Any) -> bool:
    """Whether a fit is finished here and on every rank of its process group."""
    if process_group is None:
        return finished
    import torch.distributed as dist

    # NCCL reduces only CUDA tensors; gloo takes CPU ones.
    device = device if dist.get_backend(process_group) == "nccl" else "cpu"
    running = torch.tensor([0 if finished else 1], device=device)
    dist.all_reduce(running, group=process_group)
    return int(running) == 0
