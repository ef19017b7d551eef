r"""Fit the potential :math:`\Phi_\theta` that makes a DF stationary."""

from __future__ import annotations

__all__ = ["PotentialCollapseWarning", "PotentialFit", "fit_potential"]

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from .cbe import cbe_loss, stationarity_residual
from .nn import PotentialNet
from .runtime import progress_bar, resolve_device, seeded, torch_threads

#: Fewest phase-space points a fit accepts; below this the validation split
#: and the gauge shells hold too few points to mean anything.
MIN_POINTS = 256


class PotentialCollapseWarning(UserWarning):
    """The fit collapsed to a constant potential (or diverged) and was restarted."""


class DistributionFunction(Protocol):
    """What :func:`fit_potential` needs of a DF model (e.g. a ``FlowEnsemble``)."""

    def sample(self, n: int, *, seed: int | None = None): ...

    def grad_log_prob(self, x, v): ...

    def log_prob(self, x, v): ...


@dataclass
class PotentialFit:
    """The result of :func:`fit_potential`.

    Attributes
    ----------
    net : :class:`~gala_deeppotential.nn.PotentialNet`
        The trained network, with its gauge constant set, in the caller's units.
    data_radius : float
        Radius (caller's length unit) that holds 99% of the fitted points; the
        potential is constrained only within about this radius.
    gauge : dict
        How the additive constant was fixed (see :func:`fit_potential`).
    history : dict of str to list
        ``step``, ``train_loss``, ``val_loss``, ``grad_phi`` (median scaled
        :math:`|\\nabla\\Phi|` on the validation points) and ``restarts``.
    config : dict
        The settings of the fit, JSON-able.
    wall_s : float
        Wall-clock seconds of the fit.
    """

    net: PotentialNet
    data_radius: float
    gauge: dict[str, Any]
    history: dict[str, list]
    config: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def fit_potential(
    data: DistributionFunction | tuple,
    *,
    n_samples: int = 2**15,
    form: str = "log_f",
    lam: float = 2.0,
    n_steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-2,
    warmup_fraction: float = 0.05,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    validation_fraction: float = 0.1,
    eval_every: int = 100,
    n_hidden: int = 128,
    n_layers: int = 3,
    activation: str = "silu",
    gauge: str = "kepler",
    max_restarts: int = 3,
    seed: int | None = 0,
    device: str | torch.device | None = "cpu",
    threads: int | None = None,
    progress: bool = True,
) -> PotentialFit:
    r"""Fit :math:`\Phi_\theta` so that the DF is stationary, with non-negative density.

    Minimises the loss of Green & Ting (2020), Eq. 3
    (:func:`~gala_deeppotential.cbe.cbe_loss`), over phase-space points drawn
    from the DF, with the DF gradients computed once and cached.

    Two forms of the stationarity residual are available:

    ``"log_f"`` (default)
        :math:`\partial \ln f/\partial t`, built from :math:`\nabla \ln f`.
        Every point counts equally, so the outskirts, where f is tiny, still
        constrain the forces. It measured far better than the f form (see
        ``docs/benchmarks.md``).
    ``"f"``
        The paper's :math:`\partial f/\partial t`, from :math:`\nabla f`, with f
        divided by its median over the points so the loss does not depend on
        the units of f.

    The loss is evaluated in the network's natural units, lengths over
    :math:`s_x` (the median radius) and velocities over :math:`s_v` (the root
    median square speed), so it does not depend on the caller's units.

    Parameters
    ----------
    data : DF model or tuple
        Either a DF with ``sample(n, seed=)``, ``grad_log_prob(x, v)`` and
        ``log_prob(x, v)`` (a :class:`~gala_deeppotential.df.FlowEnsemble`), or
        precomputed arrays ``(x, v, grad_x, grad_v)``, each ``(N, 3)``, where
        the gradients are of :math:`\ln f` (``form="log_f"``) or of :math:`f`
        (``form="f"``). Positions and velocities share one unit system.
    n_samples : int
        Points drawn from a DF model (ignored for arrays).
    form : {"log_f", "f"}
        Which residual to use; see above.
    lam : float
        Weight :math:`\lambda` of the positive-density penalty.
    n_steps, batch_size, lr : int, int, float
        Optimiser steps, points per step and peak learning rate of RAdam.
    warmup_fraction : float
        Fraction of steps with a linear learning-rate warm-up; a cosine decay
        follows.
    weight_decay, grad_clip : float
        L2 weight decay and the gradient-norm clip.
    validation_fraction : float
        Held-out fraction of points; the weights with the lowest validation
        loss are kept.
    eval_every : int
        Steps between validation checks.
    n_hidden, n_layers, activation
        Architecture of :class:`~gala_deeppotential.nn.PotentialNet`.
    gauge : {"kepler", "center"}
        How the additive constant of :math:`\Phi` is fixed. ``"kepler"``
        makes :math:`\Phi \to 0` at infinity by matching a Keplerian tail at
        the edge of the data: at :math:`r_e`, the 95th-percentile radius, the
        angle-averaged :math:`\Phi(r_e) = -\langle g_r(r_e)\rangle r_e`.
        ``"center"`` sets :math:`\Phi(0) = 0`.
    max_restarts : int
        Restarts allowed when the fit fails. The fit has failed when, after
        a quarter of the steps, it has collapsed (the median scaled force
        :math:`|\nabla\Phi| s_x / s_v^2` is below 0.01 and the validation
        loss no better than 90% of that of a constant potential), or diverged
        (the loss is 1.5 times that of a constant potential, or not finite).
        It then restarts from fresh weights with 0.3 times the learning rate
        and no weight decay (the usual culprits), and warns with a
        :class:`PotentialCollapseWarning`.
    seed : int, optional
        Seed for the sampling, weights and batches.
    device : {"cpu", "cuda"}
        Where to train.
    threads : int, optional
        torch intra-op threads for the fit.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    fit : :class:`PotentialFit`

    Raises
    ------
    RuntimeError
        If the fit still collapses after ``max_restarts`` restarts.
    """
    if form not in ("log_f", "f"):
        raise ValueError(f"form must be 'log_f' or 'f', got {form!r}")
    if gauge not in ("kepler", "center"):
        raise ValueError(f"gauge must be 'kepler' or 'center', got {gauge!r}")
    config = {
        "n_samples": n_samples,
        "form": form,
        "lam": lam,
        "n_steps": n_steps,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_fraction": warmup_fraction,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "validation_fraction": validation_fraction,
        "n_hidden": n_hidden,
        "n_layers": n_layers,
        "activation": activation,
        "gauge": gauge,
        "seed": seed,
    }
    device = resolve_device(device)
    start = time.perf_counter()
    with torch_threads(threads):
        x, v, gx, gv = _training_points(data, n_samples, form, seed)
        net_kwargs = {
            "n_hidden": n_hidden,
            "n_layers": n_layers,
            "activation": activation,
            "length_scale": float(np.median(np.linalg.norm(x, axis=1))),
            "phi_scale": float(np.median(np.sum(v**2, axis=1))),
        }
        points = _to_device(x, v, gx, gv, device)
        n_val = max(round(validation_fraction * len(x)), 1)
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        perm = torch.randperm(len(x), generator=gen).to(device)
        val, train = points[perm[:n_val]], points[perm[n_val:]]
        history: dict[str, list] = {"restarts": []}
        lr_now, decay_now = lr, weight_decay
        for attempt in range(max_restarts + 1):
            with seeded(None if seed is None else seed + attempt):
                net = PotentialNet(**net_kwargs).to(device)
            failure = _train(
                net,
                train,
                val,
                history,
                gen,
                device,
                lr_now,
                decay_now,
                config,
                eval_every,
                progress,
            )
            if failure is None:
                break
            failure.update(lr=lr_now, weight_decay=decay_now)
            history["restarts"].append(failure)
            what = (
                "collapsed to a constant potential"
                if failure["grad_phi"] < 1e-2
                else "diverged"
            )
            if attempt == max_restarts:
                raise RuntimeError(
                    f"the potential fit {what} {max_restarts + 1} times, last "
                    f"with lr={lr_now:g} and weight_decay={decay_now:g}; lower lr, "
                    "lam or weight_decay, or check that the DF gradients are "
                    "finite and not all zero"
                )
            lr_now, decay_now = 0.3 * lr_now, 0.0
            warnings.warn(
                f"potential fit {what} at step {failure['step']}; restarting with "
                f"lr={lr_now:g}, weight_decay={decay_now:g}",
                PotentialCollapseWarning,
                stacklevel=2,
            )
        net = net.cpu().eval()
        gauge_info = _fix_gauge(net, x, gauge)
    return PotentialFit(
        net=net,
        data_radius=float(np.quantile(np.linalg.norm(x, axis=1), 0.99)),
        gauge=gauge_info,
        history=history,
        config=config,
        wall_s=time.perf_counter() - start,
    )


def _training_points(data, n_samples: int, form: str, seed: int | None):
    """(x, v, grad_x, grad_v) as float64 numpy arrays, validated."""
    if isinstance(data, tuple | list):
        if len(data) != 4:
            raise ValueError(
                "pass (x, v, grad_x, grad_v) as four (N, 3) arrays, "
                f"or a DF model; got a sequence of {len(data)}"
            )
        arrays = [_as_numpy(a) for a in data]
    else:
        for name in ("sample", "grad_log_prob", "log_prob"):
            if not callable(getattr(data, name, None)):
                raise TypeError(
                    f"data must be a DF model with .sample, .grad_log_prob and "
                    f".log_prob (e.g. a FlowEnsemble), or a tuple of arrays; "
                    f"{type(data).__name__} has no .{name}"
                )
        x, v = data.sample(n_samples, seed=seed)
        gx, gv = data.grad_log_prob(x, v)
        arrays = [_as_numpy(a) for a in (x, v, gx, gv)]
        if form == "f":
            f = np.exp(_as_numpy(data.log_prob(x, v)))[:, None]
            arrays[2:] = [f * arrays[2], f * arrays[3]]
    n = len(arrays[0])
    for name, a in zip(("x", "v", "grad_x", "grad_v"), arrays, strict=True):
        if a.shape != (n, 3):
            raise ValueError(f"{name} must have shape ({n}, 3), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"{name} has {np.count_nonzero(~np.isfinite(a).all(1))} rows with "
                "NaN or inf; drop them before fitting"
            )
    if n < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} points to fit Φ, got {n}")
    if form == "f":
        # Divide f out of its units: the residual is linear in the gradients.
        norm = np.median(np.linalg.norm(arrays[3], axis=1))
        arrays[2:] = [arrays[2] / norm, arrays[3] / norm]
    return arrays


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _to_device(x, v, gx, gv, device) -> torch.Tensor:
    """One float32 tensor ``(N, 12)`` of scaled-free columns, moved once."""
    return torch.as_tensor(np.hstack([x, v, gx, gv]), dtype=torch.float32).to(device)


def _batch_loss(net: PotentialNet, batch: torch.Tensor, lam: float):
    """The Eq. 3 loss in the net's natural units, and the scaled median force."""
    x, v, gx, gv = batch.split(3, dim=1)
    _, grad_phi, lap = net.grad_and_laplacian(x)
    length = net.length_scale
    speed = net.phi_scale.sqrt()
    residual = stationarity_residual(v, grad_phi, gx, gv) * (length / speed)
    loss = cbe_loss(residual, lap * length**2 / net.phi_scale, lam)
    force = grad_phi.norm(dim=1).median() * length / net.phi_scale
    return loss, force


def _constant_potential_loss(val: torch.Tensor, net: PotentialNet) -> float:
    """Loss of Φ = const on the validation points: the plateau of a collapse."""
    _x, v, gx, _ = val.split(3, dim=1)
    res = (v * gx).sum(1) * (net.length_scale / net.phi_scale.sqrt())
    return float(torch.asinh(res.abs()).mean())


def _train(
    net,
    train,
    val,
    history,
    gen,
    device,
    lr,
    weight_decay,
    config,
    eval_every,
    progress,
) -> dict | None:
    """Train in place; return ``None``, or a record of how the fit failed."""
    n_steps = config["n_steps"]
    opt = torch.optim.RAdam(net.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(int(config["warmup_fraction"] * n_steps), 1)
    judge_from = max(2 * warmup, n_steps // 4)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (n_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    plateau = _constant_potential_loss(val, net)
    best, best_state = math.inf, None
    for key in ("step", "train_loss", "val_loss", "grad_phi"):
        history[key] = []
    batch_size = min(config["batch_size"], len(train))
    steps = progress_bar(range(n_steps), enabled=progress, desc="Φ fit", unit="step")
    running = torch.zeros((), device=device)
    for step in steps:
        idx = torch.randint(len(train), (batch_size,), generator=gen).to(device)
        loss, _ = _batch_loss(net, train[idx], config["lam"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config["grad_clip"])
        opt.step()
        sched.step()
        running += loss.detach()
        if (step + 1) % eval_every and step + 1 != n_steps:
            continue
        with torch.no_grad():
            val_loss, force = (float(t) for t in _batch_loss(net, val, config["lam"]))
        n_since = (step % eval_every) + 1
        history["step"].append(step + 1)
        history["train_loss"].append(float(running) / n_since)
        history["val_loss"].append(val_loss)
        history["grad_phi"].append(force)
        running.zero_()
        if progress:
            steps.set_postfix(val_loss=f"{val_loss:.4f}")
        # A collapse: no force and no better than Φ = const. A divergence:
        # clearly worse than Φ = const.
        flat = force < 1e-2 and val_loss > 0.9 * plateau
        stuck = flat or val_loss > 1.5 * plateau
        if not math.isfinite(val_loss) or (step + 1 >= judge_from and stuck):
            return {"step": step + 1, "val_loss": val_loss, "grad_phi": force}
        if val_loss < best:
            best = val_loss
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
    net.load_state_dict(best_state)
    return None


def _fix_gauge(net: PotentialNet, x: np.ndarray, gauge: str) -> dict[str, Any]:
    """Set ``net.phi_offset`` by the chosen gauge; return a JSON-able record."""
    with torch.no_grad():
        net.phi_offset.zero_()
        if gauge == "center":
            phi0 = float(net(torch.zeros(1, 3, dtype=net.phi_scale.dtype))[0])
            net.phi_offset.fill_(-phi0)
            return {"gauge": "center", "phi_at_center": 0.0}
        r_edge = float(np.quantile(np.linalg.norm(x, axis=1), 0.95))
        dirs = _fibonacci_sphere(512)
        pts = torch.as_tensor(r_edge * dirs, dtype=net.phi_scale.dtype)
        phi, grad = net.value_and_grad(pts)
        g_r = float((grad * torch.as_tensor(dirs, dtype=grad.dtype)).sum(1).mean())
        offset = -g_r * r_edge - float(phi.mean())
        net.phi_offset.fill_(offset)
    return {"gauge": "kepler", "r_edge": r_edge, "mass_edge_over_G": g_r * r_edge**2}


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors, shape ``(n, 3)``."""
    i = np.arange(n) + 0.5
    cos_t = 1 - 2 * i / n
    sin_t = np.sqrt(1 - cos_t**2)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
