r"""The optimisation of the Φ fit: one training run, its failure checks, restarts.

:func:`~gala_deeppotential.potential.fit_potential` prepares the points and
the network's settings and calls :func:`fit_with_restarts`, which trains
fresh networks until one neither collapses to a constant potential nor
diverges.
"""

from __future__ import annotations

__all__ = ["PotentialCollapseWarning", "fit_with_restarts"]

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from .cbe import cbe_loss, stationarity_residual
from .nn import PotentialNet
from .runtime import progress_bar, seeded

if TYPE_CHECKING:
    from .potential import DFGradients, PotentialOptions


class PotentialCollapseWarning(UserWarning):
    """The fit collapsed to a constant potential (or diverged) and was restarted."""


def fit_with_restarts(
    points: DFGradients,
    net_kwargs: dict,
    options: PotentialOptions,
    history: dict[str, list],
    seed: int | None,
    device: torch.device,
    progress: bool,
) -> PotentialNet:
    """Train fresh networks until one neither collapses nor diverges."""
    columns = np.hstack([points.x, points.v, points.grad_x, points.grad_v])
    table = torch.as_tensor(columns, dtype=torch.float32).to(device)
    n_val = max(round(options.validation_fraction * len(points)), 1)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    perm = torch.randperm(len(points), generator=generator).to(device)
    val, train = table[perm[:n_val]], table[perm[n_val:]]
    lr, weight_decay = options.lr, options.weight_decay
    for attempt in range(options.max_restarts + 1):
        with seeded(None if seed is None else seed + attempt):
            net = PotentialNet(**net_kwargs).to(device)
        run = _Run(net, options, lr, weight_decay, generator, device)
        failure = run.train(train, val, history, progress)
        if failure is None:
            return net
        failure.update(lr=lr, weight_decay=weight_decay)
        history["restarts"].append(failure)
        what = (
            "collapsed to a constant potential"
            if failure["grad_phi"] < 1e-2
            else "diverged"
        )
        if attempt == options.max_restarts:
            tries = options.max_restarts + 1
            count = "once" if tries == 1 else f"{tries} times"
            raise RuntimeError(
                f"the potential fit {what} {count}, last with lr={lr:g} and "
                f"weight_decay={weight_decay:g}; lower lr, "
                "negative_density_weight or weight_decay, or check that the DF "
                "gradients are finite and not all zero"
            )
        lr, weight_decay = 0.3 * lr, 0.0
        warnings.warn(
            f"potential fit {what} at step {failure['step']}; restarting with "
            f"lr={lr:g}, weight_decay={weight_decay:g}",
            PotentialCollapseWarning,
            stacklevel=3,
        )
    raise AssertionError("unreachable")  # pragma: no cover


class _Run:
    """One attempt at the Φ fit: optimiser, schedule, weight average, the loop."""

    def __init__(
        self,
        net: PotentialNet,
        options: PotentialOptions,
        lr: float,
        weight_decay: float,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.net, self.options = net, options
        self.generator, self.device = generator, device
        n_steps = options.n_steps
        self.optimizer = torch.optim.RAdam(
            net.parameters(), lr=lr, weight_decay=weight_decay
        )
        warmup = max(int(options.warmup_fraction * n_steps), 1)
        self.judge_from = max(2 * warmup, n_steps // 4)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (
                1 + math.cos(math.pi * (step - warmup) / max(n_steps - warmup, 1))
            )

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.averaged = None
        if options.average_fraction > 0:
            decay = 1 - 1 / max(options.average_fraction * n_steps, 1)
            self.averaged = torch.optim.swa_utils.AveragedModel(
                net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
            )

    @property
    def judged(self) -> PotentialNet:
        """The weights that are validated and kept: the average, if there is one."""
        return self.net if self.averaged is None else self.averaged.module

    def _step(self, batch: torch.Tensor) -> torch.Tensor:
        loss, _ = _batch_loss(self.net, batch, self.options.negative_density_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.options.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.net)
        return loss.detach()

    def train(
        self,
        train: torch.Tensor,
        val: torch.Tensor,
        history: dict[str, list],
        progress: bool,
    ) -> dict | None:
        """Train in place; return ``None``, or a record of how the fit failed."""
        n_steps, every = self.options.n_steps, self.options.eval_every
        plateau = _constant_potential_loss(val, self.net)
        best, best_state = math.inf, None
        keys = ["step", "train_loss", "val_loss", "grad_phi"]
        fitted_omega = self.net.config["pattern_speed"] == "fit"
        if fitted_omega:
            keys.append("pattern_speed")
        for key in keys:
            history[key] = []
        batch_size = min(self.options.batch_size, len(train))
        steps = progress_bar(
            range(n_steps), enabled=progress, desc="Φ fit", unit="step"
        )
        running = torch.zeros((), device=self.device)
        for step in steps:
            if step % every == 0:
                # One host-to-device copy per block of steps (a blocking copy
                # waits for the GPU); the same draws as one randint per step.
                rows = min(every, n_steps - step)
                block = torch.randint(
                    len(train), (rows, batch_size), generator=self.generator
                ).to(self.device)
            running += self._step(train[block[step % every]])
            if (step + 1) % every and step + 1 != n_steps:
                continue
            with torch.no_grad():
                val_loss, force = (
                    float(t)
                    for t in _batch_loss(
                        self.judged, val, self.options.negative_density_weight
                    )
                )
            history["step"].append(step + 1)
            history["train_loss"].append(float(running) / ((step % every) + 1))
            history["val_loss"].append(val_loss)
            history["grad_phi"].append(force)
            if fitted_omega:
                history["pattern_speed"].append(self.judged.pattern_speed)
            running.zero_()
            if progress:
                steps.set_postfix(val_loss=f"{val_loss:.4f}")
            # A collapse: no force and no better than Φ = const. A divergence:
            # clearly worse than Φ = const.
            flat = force < 1e-2 and val_loss > 0.9 * plateau
            stuck = flat or val_loss > 1.5 * plateau
            if not math.isfinite(val_loss) or (step + 1 >= self.judge_from and stuck):
                return {"step": step + 1, "val_loss": val_loss, "grad_phi": force}
            if val_loss < best:
                best = val_loss
                best_state = {
                    k: t.detach().clone() for k, t in self.judged.state_dict().items()
                }
        self.net.load_state_dict(best_state)
        return None


def _batch_loss(net: PotentialNet, batch: torch.Tensor, weight: float):
    """The Eq. 3 loss in the net's natural units, and the scaled median force."""
    x, v, grad_x, grad_v = batch.split(3, dim=1)
    _, grad_phi, lap = net.grad_and_laplacian(x)
    length = net.length_scale
    speed = net.phi_scale.sqrt()
    residual = stationarity_residual(
        v, grad_phi, grad_x, grad_v, x=x, pattern_speed=net.pattern_speed_tensor()
    ) * (length / speed)
    loss = cbe_loss(residual, lap * length**2 / net.phi_scale, weight)
    force = grad_phi.norm(dim=1).median() * length / net.phi_scale
    return loss, force


def _constant_potential_loss(val: torch.Tensor, net: PotentialNet) -> float:
    """Loss of Φ = const on the validation points: the plateau of a collapse."""
    _x, v, grad_x, _ = val.split(3, dim=1)
    res = (v * grad_x).sum(1) * (net.length_scale / net.phi_scale.sqrt())
    return float(torch.asinh(res.abs()).mean())
