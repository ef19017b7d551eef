r"""Fit the potential :math:`\Phi_\theta` that makes a DF stationary."""

from __future__ import annotations

__all__ = [
    "FitResult",
    "PotentialCollapseWarning",
    "PotentialFit",
    "fit",
    "fit_potential",
]

import copy
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from gala.units import UnitSystem, galactic

from . import io
from .cbe import cbe_loss, stationarity_residual
from .df import FlowEnsemble, fit_distribution_function
from .gala_potential import DeepPotential, _units_to_json
from .nn import RADIAL_SOFTENING, PotentialNet, sphere_directions
from .phasespace import to_phase_space
from .runtime import progress_bar, resolve_device, seeded, torch_threads
from .virial import virial_scale

#: Fewest phase-space points a fit accepts; below this the validation split
#: and the gauge shells hold too few points to mean anything.
MIN_POINTS = 256

#: Fraction of the fitted points inside the default softening radius of the
#: network's radial input (``radial_softening`` of :func:`fit_potential`).
SOFTENING_QUANTILE = 1e-3


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
    virial : dict
        The virial calibration (see :func:`fit_potential`): the result of
        :func:`~gala_deeppotential.virial.virial_scale` for the network
        before it was scaled, whose ``scale`` was applied; empty if no stars
        were given.
    """

    net: PotentialNet
    data_radius: float
    gauge: dict[str, Any]
    history: dict[str, list]
    config: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    virial: dict[str, Any] = field(default_factory=dict)


def fit_potential(
    data: DistributionFunction | tuple,
    *,
    stars: tuple | None = None,
    n_samples: int = 2**15,
    form: str = "log_f",
    lam: float = 2.0,
    n_steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-2,
    warmup_fraction: float = 0.05,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    average_fraction: float = 0.05,
    validation_fraction: float = 0.1,
    eval_every: int = 100,
    n_hidden: int = 128,
    n_layers: int = 3,
    activation: str = "silu",
    radial: bool = True,
    radial_softening: float | None = None,
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
    from the DF, with the DF gradients computed once and cached. Then, given
    the ``stars``, it scales :math:`\Phi` so that they obey the virial
    theorem (:func:`~gala_deeppotential.virial.virial_scale`); :func:`fit`
    always does.

    Why the calibration: the DF gradients of a fitted DF are noisy, and noise
    in :math:`\nabla_v \ln f`, which multiplies :math:`\nabla\Phi` in the
    residual, biases the fitted forces low (regression dilution), by about
    1.5% for the default flows on a Plummer sphere. The virial theorem, a
    moment of the same collisionless Boltzmann equation, needs only the
    stars' positions and velocities, so it measures the overall strength of
    the forces without that bias, to :math:`\approx 1/\sqrt{N}` (0.35% for
    2¹⁷ Plummer stars). The calibration assumes the sample is complete inside
    the window of :data:`~gala_deeppotential.virial.VIRIAL_WINDOW` (a shell
    about the stars' median position between the radii that hold 10% and
    99% of them); leave ``stars`` out for a catalogue cut to another shape.

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
    stars : (x, v), optional
        Positions and velocities ``(N, 3)`` of the stars the DF was fitted
        to, in the same units: the fitted :math:`\Phi` is then scaled to
        obey the virial theorem with them (see above). Without them it is
        not; with exact DF gradients it needs no calibration.
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
    average_fraction : float
        Length, as a fraction of ``n_steps``, of an exponential moving
        average of the weights, which is what is validated and returned: a
        decay per step of 1 - 1 / (``average_fraction`` * ``n_steps``), 0.99
        for the default 2000 steps. It smooths out the optimiser's last steps
        (it measured 0.12 points better on the flows' gradients, see
        ``docs/benchmarks.md``); 0 returns the raw weights.
    validation_fraction : float
        Held-out fraction of points; the weights with the lowest validation
        loss are kept.
    eval_every : int
        Steps between validation checks.
    n_hidden, n_layers, activation, radial
        Architecture of :class:`~gala_deeppotential.nn.PotentialNet`;
        ``radial=True`` (the default) adds the radius as an input, which lets
        Φ follow a central density cusp and measured better on a cored
        sphere too (see :class:`~gala_deeppotential.nn.PotentialNet` and
        ``docs/benchmarks.md``); ``radial=False`` is the paper's network of
        :math:`\vec{x}` alone.
    radial_softening : float, optional
        Softening of the radial input, in units of the median radius of the
        points. By default the radius inside which lie
        :data:`SOFTENING_QUANTILE` of the points (at least
        :data:`~gala_deeppotential.nn.RADIAL_SOFTENING`): where no points
        constrain Φ, the network then has no kink, and the density stays
        finite.
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
    if not 0 <= average_fraction < 1:
        raise ValueError(
            f"average_fraction must be in [0, 1) (0 turns it off), "
            f"got {average_fraction}"
        )
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
        "radial": radial,
        "radial_softening": radial_softening,
        "average_fraction": average_fraction,
        "gauge": gauge,
        "seed": seed,
    }
    device = resolve_device(device)
    start = time.perf_counter()
    with torch_threads(threads):
        x, v, gx, gv = _training_points(data, n_samples, form, seed)
        stars = None if stars is None else _stars(stars)
        radii = np.linalg.norm(x, axis=1)
        length = float(np.median(radii))
        if radial_softening is None:
            inner = float(np.quantile(radii, SOFTENING_QUANTILE)) / length
            radial_softening = max(inner, RADIAL_SOFTENING)
        net_kwargs = {
            "n_hidden": n_hidden,
            "n_layers": n_layers,
            "activation": activation,
            "radial": radial,
            "radial_softening": radial_softening,
            "length_scale": length,
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
        calibration = {} if stars is None else _calibrate(net, *stars)
        gauge_info = _fix_gauge(net, x, gauge)
    return PotentialFit(
        net=net,
        data_radius=float(np.quantile(np.linalg.norm(x, axis=1), 0.99)),
        gauge=gauge_info,
        history=history,
        config=config,
        wall_s=time.perf_counter() - start,
        virial=calibration,
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
    _check_rows(("x", "v", "grad_x", "grad_v"), arrays, "points to fit Φ")
    if form == "f":
        # Divide f out of its units: the residual is linear in the gradients.
        norm = np.median(np.linalg.norm(arrays[3], axis=1))
        arrays[2:] = [arrays[2] / norm, arrays[3] / norm]
    return arrays


def _check_rows(names: tuple[str, ...], arrays: list[np.ndarray], what: str) -> None:
    """Refuse arrays that are not all ``(N, 3)`` and finite, with N enough."""
    n = len(arrays[0])
    for name, a in zip(names, arrays, strict=True):
        if a.shape != (n, 3):
            raise ValueError(f"{name} must have shape ({n}, 3), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"{name} has {np.count_nonzero(~np.isfinite(a).all(1))} rows with "
                "NaN or inf; drop them before fitting"
            )
    if n < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} {what}, got {n}")


def _stars(stars) -> tuple[np.ndarray, np.ndarray]:
    """The ``stars=(x, v)`` of :func:`fit_potential` as float64 arrays, validated."""
    if not isinstance(stars, tuple | list) or len(stars) != 2:
        raise ValueError("pass stars as (x, v), two (N, 3) arrays")
    arrays = [_as_numpy(a) for a in stars]
    _check_rows(("stars' x", "stars' v"), arrays, "stars for the virial calibration")
    return arrays[0], arrays[1]


def _calibrate(net: PotentialNet, x: np.ndarray, v: np.ndarray) -> dict[str, Any]:
    """Scale ``net``'s Φ in place to obey the virial theorem at the stars."""
    grad = np.empty_like(x)
    double = copy.deepcopy(net).double()
    for rows in np.array_split(np.arange(len(x)), max(len(x) // 2**15, 1)):
        grad[rows] = double.value_and_grad(torch.from_numpy(x[rows]))[1].numpy()
    result = virial_scale(x, v, grad)
    with torch.no_grad():
        net.phi_scale.mul_(result["scale"])
    return result


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
    averaged = None
    if config["average_fraction"] > 0:
        decay = 1 - 1 / max(config["average_fraction"] * n_steps, 1)
        averaged = torch.optim.swa_utils.AveragedModel(
            net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
        )
    plateau = _constant_potential_loss(val, net)
    best, best_state = math.inf, None
    for key in ("step", "train_loss", "val_loss", "grad_phi"):
        history[key] = []
    batch_size = min(config["batch_size"], len(train))
    steps = progress_bar(range(n_steps), enabled=progress, desc="Φ fit", unit="step")
    running = torch.zeros((), device=device)
    for step in steps:
        if step % eval_every == 0:
            # One host-to-device copy per block of steps (a blocking copy
            # waits for the GPU); the same draws as one randint per step.
            rows = min(eval_every, n_steps - step)
            block = torch.randint(len(train), (rows, batch_size), generator=gen)
            block = block.to(device)
        idx = block[step % eval_every]
        loss, _ = _batch_loss(net, train[idx], config["lam"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config["grad_clip"])
        opt.step()
        sched.step()
        if averaged is not None:
            averaged.update_parameters(net)
        running += loss.detach()
        if (step + 1) % eval_every and step + 1 != n_steps:
            continue
        judged = net if averaged is None else averaged.module
        with torch.no_grad():
            val_loss, force = (
                float(t) for t in _batch_loss(judged, val, config["lam"])
            )
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
            best_state = {k: t.detach().clone() for k, t in judged.state_dict().items()}
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
        dirs = sphere_directions(512)
        pts = torch.as_tensor(r_edge * dirs, dtype=net.phi_scale.dtype)
        phi, grad = net.value_and_grad(pts)
        g_r = float((grad * torch.as_tensor(dirs, dtype=grad.dtype)).sum(1).mean())
        offset = -g_r * r_edge - float(phi.mean())
        net.phi_offset.fill_(offset)
    return {"gauge": "kepler", "r_edge": r_edge, "mass_edge_over_G": g_r * r_edge**2}


# ---------------------------------------------------------------------------
# The whole pipeline: a catalogue in, a DeepPotential out.

# Files in a pipeline checkpoint folder.
_MANIFEST_FILE = "manifest.json"
_DF_FOLDER = "df"
_POTENTIAL_FILE = "potential_fit.pt"
_POTENTIAL_KIND = "potential_fit"
# Keywords that fit() sets itself, so the option dicts may not.
_COMMON = frozenset({"seed", "device", "threads", "progress"})
_RESERVED = {
    "df_options": _COMMON | {"n_flows", "checkpoint_dir", "data"},
    "potential_options": _COMMON | {"data", "stars"},
}


@dataclass
class FitResult:
    r"""The result of :func:`fit`: the learned potential and how it was obtained.

    Attributes
    ----------
    potential : :class:`~gala_deeppotential.DeepPotential`
        :math:`\Phi_\theta` in the unit system of the fit, Galactocentric.
    df : :class:`~gala_deeppotential.df.FlowEnsemble`
        The flow ensemble fitted to the stars, in the same units.
    potential_fit : :class:`PotentialFit`
        The raw network fit behind ``potential``.
    phase_space : dict
        JSON-able record of the input: ``units`` (unit strings, or None for
        dimensionless), ``frame`` (the Galactocentric frame as
        :func:`~gala_deeppotential.phasespace.galcen_frame_to_dict` writes
        it, or None), ``n_stars`` and ``n_dropped``.
    config : dict
        JSON-able settings: ``n_flows``, ``df_options``,
        ``potential_options`` and ``seed``.
    """

    potential: DeepPotential
    df: FlowEnsemble
    potential_fit: PotentialFit
    phase_space: dict[str, Any]
    config: dict[str, Any]

    @property
    def history(self) -> dict[str, dict[str, list]]:
        """Training curves: ``"df"`` (per epoch) and ``"potential"`` (per check)."""
        return {"df": self.df.history, "potential": self.potential_fit.history}

    def report(
        self,
        *,
        n_points: int = 4096,
        seed: int | None = None,
        threads: int | None = None,
        plot: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        r"""Summarise the training and how stationary the fitted DF is in :math:`\Phi`.

        At ``n_points`` fresh draws from the DF (not those Φ was fitted on)
        it measures the stationarity residual relative to the size of its
        two terms,

        .. math::

            \epsilon = \frac{|\nabla\Phi\cdot\nabla_v \ln f
                - \vec{v}\cdot\nabla_x \ln f|}
                {|\nabla\Phi\cdot\nabla_v \ln f| + |\vec{v}\cdot\nabla_x \ln f|},

        which is 0 for a perfectly stationary DF and 1 where the two terms
        differ in sign (or one vanishes), and the fraction of points where
        :math:`\nabla^2\Phi < 0`, a negative mass density.

        Parameters
        ----------
        n_points : int
            DF samples to evaluate at.
        seed : int, optional
            Seed of those samples; by default the fit's seed plus one.
        threads : int, optional
            torch intra-op threads for the evaluation.
        plot : str or path-like, optional
            Write a PNG of the training curves there.

        Returns
        -------
        report : dict
            JSON-able: ``n_stars``, ``n_dropped``, ``units``; ``df``
            (``n_flows``, ``epochs``, ``best_epoch`` per member, the last
            ``train_loss`` and best ``val_loss`` averaged over members, as
            :math:`-\langle\ln f\rangle` in the fit's units, and ``wall_s``);
            ``potential`` (``steps``, first and best ``val_loss``,
            ``restarts``, ``wall_s``, ``data_radius`` [length unit], and
            ``virial_scale`` and ``virial_scale_error``, the calibration
            applied to the forces, or None);
            ``stationarity`` (``n_points`` and the median and 90th percentile
            of :math:`\epsilon`); ``negative_density_fraction``.
        """
        seed = self.config["seed"] + 1 if seed is None else seed
        with torch_threads(threads):
            x, v = self.df.sample(n_points, seed=seed)
            grad_x, grad_v = self.df.grad_log_prob(x, v)
            x, v, grad_x, grad_v = (
                t.detach().cpu().double() for t in (x, v, grad_x, grad_v)
            )
            net = copy.deepcopy(self.potential_fit.net).double()
            with torch.no_grad():
                _, grad_phi, lap = net.grad_and_laplacian(x)
        residual = stationarity_residual(v, grad_phi, grad_x, grad_v).abs()
        terms = (grad_phi * grad_v).sum(1).abs() + (v * grad_x).sum(1).abs()
        relative = (residual / terms).numpy()
        df_hist, phi_hist = self.df.history, self.potential_fit.history
        if plot is not None:
            _plot_training(df_hist, phi_hist, Path(plot))
        return {
            "n_stars": self.phase_space["n_stars"],
            "n_dropped": self.phase_space["n_dropped"],
            "units": self.phase_space["units"],
            "df": {
                "n_flows": self.df.n_flows,
                "epochs": len(df_hist["epoch"]),
                "best_epoch": df_hist["best_epoch"],
                "train_loss": float(np.mean(df_hist["train_loss"][-1])),
                "val_loss": float(np.mean(np.min(df_hist["val_loss"], axis=0))),
                "wall_s": df_hist["wall_s"][-1],
            },
            "potential": {
                "steps": phi_hist["step"][-1],
                "val_loss_first": phi_hist["val_loss"][0],
                "val_loss": min(phi_hist["val_loss"]),
                "restarts": len(phi_hist["restarts"]),
                "wall_s": self.potential_fit.wall_s,
                "data_radius": self.potential_fit.data_radius,
                "virial_scale": self.potential_fit.virial.get("scale"),
                "virial_scale_error": self.potential_fit.virial.get("error"),
            },
            "stationarity": {
                "n_points": int(n_points),
                "median_relative_residual": float(np.median(relative)),
                "p90_relative_residual": float(np.quantile(relative, 0.9)),
            },
            "negative_density_fraction": float((lap < 0).double().mean()),
        }

    def save(
        self, path: str | os.PathLike, *, report: Mapping[str, Any] | None = None
    ) -> dict[str, Path]:
        """Write the potential (YAML and model file) and a JSON fit record.

        The record, next to the YAML with the suffix ``.json``, holds
        ``phase_space`` (units and Galactocentric frame of the fit),
        ``config`` and, if given, ``report``: what is needed to put new
        stars in the potential's frame.

        Parameters
        ----------
        path : str or path-like
            The YAML file, e.g. ``model.yml``; the model file is written
            with the suffix ``.pt``.
        report : dict, optional
            From :meth:`report`.

        Returns
        -------
        paths : dict of str to :class:`pathlib.Path`
            ``"yaml"``, ``"model"`` and ``"record"``.
        """
        paths = _output_paths(path)
        self.potential.save(paths["yaml"], paths["model"])
        record = {
            "phase_space": self.phase_space,
            "config": self.config,
            "report": None if report is None else dict(report),
        }
        paths["record"].write_text(json.dumps(record, indent=2), encoding="utf-8")
        return paths


def _output_paths(path: str | os.PathLike) -> dict[str, Path]:
    """The files :meth:`FitResult.save` writes for the YAML file ``path``."""
    path = Path(path)
    if path.suffix.lower() in (".pt", ".json"):
        raise ValueError(
            f"{path} would clash with the model file (.pt) or fit record "
            "(.json) written next to it; name the YAML file, e.g. model.yml"
        )
    return {
        "yaml": path,
        "model": path.with_suffix(".pt"),
        "record": path.with_suffix(".json"),
    }


def fit(
    catalogue: Any,
    *,
    units: UnitSystem = galactic,
    galcen_frame: Any = None,
    columns: Mapping[str, str] | None = None,
    drop_invalid: bool = False,
    n_flows: int | None = None,
    df_options: Mapping[str, Any] | None = None,
    potential_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    threads: int | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    distributed: bool = False,
) -> FitResult | None:
    r"""Fit a potential to a stellar catalogue: the whole method in one call.

    The stages are
    :func:`~gala_deeppotential.phasespace.to_phase_space` (the catalogue to
    Galactocentric Cartesian positions and velocities in ``units``),
    :func:`~gala_deeppotential.df.fit_distribution_function` (the flow
    ensemble, the DF), :func:`fit_potential` (the :math:`\Phi_\theta` that
    makes the DF stationary) and
    :meth:`~gala_deeppotential.DeepPotential.from_fit`.

    Parameters
    ----------
    catalogue : SkyCoord, PhaseSpacePosition, (pos, vel), Table or path
        Anything :func:`~gala_deeppotential.phasespace.to_phase_space`
        reads: e.g. an ICRS :class:`~astropy.coordinates.SkyCoord` with
        distances, proper motions and radial velocities, or an ECSV file.
    units : :class:`~gala.units.UnitSystem`
        Unit system of the fit and of the returned potential.
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict, optional
        The Galactocentric frame; see
        :func:`~gala_deeppotential.phasespace.to_phase_space`.
    columns : mapping of str to str, optional
        Column names of a table or file that differ from the defaults.
    drop_invalid : bool
        Drop stars with NaN, inf or masked values (with a warning) instead of
        raising.
    n_flows : int, optional
        Ensemble size K; by default that of
        :func:`~gala_deeppotential.df.fit_distribution_function`.
    df_options : dict, optional
        Further keywords of
        :func:`~gala_deeppotential.df.fit_distribution_function`: the flow
        architecture and training (``epochs``, ``batch_size``, ``lr``,
        ``time_limit``, ...). Their defaults are the measured ones.
    potential_options : dict, optional
        Further keywords of :func:`fit_potential` (``n_samples``,
        ``n_steps``, ``lam``, ...).
    seed : int
        Seed of both fits; with the same ``threads`` on the CPU a fit is
        reproducible bit for bit.
    device : {"cpu", "cuda"}
        Where to train.
    threads : int, optional
        torch intra-op threads while training.
    progress : bool
        Show progress bars.
    checkpoint_dir : str or path-like, optional
        Folder for checkpoints. The DF writes its training state there every
        epoch, and the finished Φ fit is stored, so calling :func:`fit` again
        with the same folder after a crash or kill resumes where the run
        stopped, and a finished run returns at once; on the CPU with the same
        ``threads`` the result is bit-identical to an uninterrupted run. The
        folder's ``manifest.json`` holds a SHA-256 of the phase-space data and
        of the settings above (not of ``device``, ``threads`` or
        ``progress``): a folder of a different fit is never reused, but
        raises instead.
    distributed : bool
        Spread the flow ensemble's members over the processes of
        ``torchrun`` (see :mod:`gala_deeppotential.distributed`; ``gloo`` on
        the CPU, ``nccl`` and ``cuda:LOCAL_RANK`` for ``device="cuda"``).
        Call it on every rank with the same arguments; the ensemble equals a
        single process's, and rank 0 alone then fits Φ.

    Returns
    -------
    result : :class:`FitResult` or None
        None on the ranks other than 0 of a distributed fit.

    Raises
    ------
    ~gala_deeppotential.phasespace.CatalogueError
        For a catalogue that cannot become phase space (the message says
        why).
    ValueError
        For bad options, or a ``checkpoint_dir`` that holds another fit or
        other files.

    Examples
    --------
    A Plummer sphere at the Galactic centre, seen from the Sun (tiny sizes
    for speed; see ``examples/skycoord_catalog.py`` for a real fit):

    >>> import astropy.units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from gala_deeppotential.mocks import plummer_sample
    >>> from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME
    >>> w = plummer_sample(1000, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=1)
    >>> stars = SkyCoord(w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME)
    >>> result = fit(
    ...     stars.icrs,
    ...     n_flows=1,
    ...     df_options={"epochs": 1},
    ...     potential_options={"n_samples": 512, "n_steps": 20},
    ...     progress=False,
    ... )
    >>> result.potential.units["length"]
    Unit("kpc")
    """
    df_kwargs = _options(df_options, "df_options")
    phi_kwargs = _options(potential_options, "potential_options")
    data = to_phase_space(
        catalogue,
        galcen_frame=galcen_frame,
        units=units,
        columns=columns,
        drop_invalid=drop_invalid,
    )
    phase_space = {
        "units": _units_to_json(units),
        "frame": data.frame,
        "n_stars": len(data),
        "n_dropped": data.n_dropped,
    }
    config = {
        "n_flows": n_flows,
        "df_options": df_kwargs,
        "potential_options": phi_kwargs,
        "seed": seed,
    }
    common = {"seed": seed, "device": device, "threads": threads, "progress": progress}
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    flow_kwargs = {
        **df_kwargs,
        **common,
        **({} if n_flows is None else {"n_flows": n_flows}),
        "checkpoint_dir": None if folder is None else folder / _DF_FOLDER,
    }
    if distributed:
        from . import distributed as multi

        with multi.process_group(device) as rank_device:
            root = torch.distributed.get_rank() == 0
            if folder is not None:
                # Rank 0 claims the folder; the others then check its manifest.
                for claims in (root, not root):
                    if claims:
                        _open_checkpoint(folder, data.w, phase_space, config)
                    torch.distributed.barrier()
            df = multi.fit_distribution_function(
                data.w, **{**flow_kwargs, "device": rank_device}
            )
        if not root:
            return None
    else:
        if folder is not None:
            _open_checkpoint(folder, data.w, phase_space, config)
        df = fit_distribution_function(data.w, **flow_kwargs)
    potential_fit = None if folder is None else _load_potential_fit(folder)
    if potential_fit is None:
        stars = (data.w[:, :3], data.w[:, 3:])
        potential_fit = fit_potential(df, stars=stars, **phi_kwargs, **common)
        if folder is not None:
            _save_potential_fit(potential_fit, folder)
    return FitResult(
        potential=DeepPotential.from_fit(potential_fit, units=units),
        df=df,
        potential_fit=potential_fit,
        phase_space=phase_space,
        config=config,
    )


def _options(options: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """A copy of an option dict, refusing the keywords :func:`fit` sets itself."""
    options = dict(options or {})
    clash = sorted(set(options) & _RESERVED[name])
    if clash:
        raise ValueError(
            f"{name} may not set {clash}: fit() sets data and stars from the "
            "catalogue, and takes seed=, device=, threads=, progress=, n_flows= "
            "and checkpoint_dir= as its own keywords; pass them to fit() directly"
        )
    return options


def _open_checkpoint(
    folder: Path, w: np.ndarray, phase_space: dict, config: dict
) -> Path:
    """Claim ``folder`` for this fit, or check that it already holds this fit."""
    digest = hashlib.sha256(np.ascontiguousarray(w, dtype=np.float64).tobytes())
    settings = {"phase_space": phase_space, "config": config}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    manifest = {"sha256": digest.hexdigest(), **settings}
    path = folder / _MANIFEST_FILE
    if path.is_file():
        if (
            json.loads(path.read_text(encoding="utf-8")).get("sha256")
            != (manifest["sha256"])
        ):
            raise ValueError(
                f"{folder} holds a checkpoint of a different fit (other stars or "
                "settings); pass a new checkpoint_dir, or delete that folder to "
                "start over"
            )
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(
            f"{folder} is not empty and holds no fit checkpoint ({_MANIFEST_FILE}); "
            "pass a new or empty folder as checkpoint_dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return folder


def _save_potential_fit(result: PotentialFit, folder: Path) -> None:
    tensors, net_config = result.net.to_state()
    io.save(
        folder / _POTENTIAL_FILE,
        kind=_POTENTIAL_KIND,
        tensors=tensors,
        metadata={
            "net_config": net_config,
            "data_radius": result.data_radius,
            "gauge": result.gauge,
            "history": result.history,
            "config": result.config,
            "wall_s": result.wall_s,
            "virial": result.virial,
        },
    )


def _load_potential_fit(folder: Path) -> PotentialFit | None:
    """The finished Φ fit stored in a checkpoint folder, if there is one."""
    path = folder / _POTENTIAL_FILE
    if not path.is_file():
        return None
    tensors, meta = io.load(path, kind=_POTENTIAL_KIND)
    return PotentialFit(
        net=PotentialNet.from_state(tensors, meta["net_config"]).eval(),
        data_radius=meta["data_radius"],
        gauge=meta["gauge"],
        history=meta["history"],
        config=meta["config"],
        wall_s=meta["wall_s"],
        virial=meta["virial"],
    )


def _plot_training(df_history: dict, phi_history: dict, path: Path) -> None:
    """A PNG of the DF and Φ training curves."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_df, ax_phi = fig.subplots(1, 2)
    epochs = df_history["epoch"]
    for key, style in (("train_loss", "--"), ("val_loss", "-")):
        curves = np.asarray(df_history[key])
        for k in range(curves.shape[1]):
            label = key.replace("_", " ") if k == 0 else None
            ax_df.plot(epochs, curves[:, k], style, color=f"C{k}", label=label)
    ax_df.set(xlabel="epoch", ylabel=r"$-\langle \ln f \rangle$", title="flows")
    ax_df.legend()
    for key, style in (("train_loss", "--"), ("val_loss", "-")):
        ax_phi.plot(phi_history["step"], phi_history[key], style, label=key)
    ax_phi.set(xlabel="step", ylabel="loss (Eq. 3)", title=r"$\Phi_\theta$")
    ax_phi.legend()
    fig.savefig(path, dpi=100)
