r"""The Φ stage: fit the potential :math:`\Phi_\theta` that makes a DF stationary."""

from __future__ import annotations

__all__ = [
    "MIN_POINTS",
    "ROTATING_STEPS",
    "SOFTENING_QUANTILE",
    "STEPS",
    "DFGradients",
    "PotentialCollapseWarning",
    "PotentialFit",
    "PotentialOptions",
    "fit_potential",
    "fix_gauge",
]

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from . import io
from .directions import sphere_directions
from .nn import RADIAL_SOFTENING, PotentialNet, check_pattern_speed
from .options import coerce_fields, options_dict, resolve_options
from .phi_training import PotentialCollapseWarning, fit_with_restarts
from .radial_map import local_center
from .runtime import resolve_device, torch_threads
from .standardizer import ROTATION_VARIANCE_FRACTION, fit_rotation_curve

#: Fewest phase-space points a fit accepts; below this the validation split
#: and the gauge shells hold too few points to mean anything.
MIN_POINTS = 256

#: Fraction of the fitted points inside the default softening radius of the
#: network's radial input (``radial_softening`` of :class:`PotentialOptions`).
SOFTENING_QUANTILE = 1e-3
#: Optimiser steps of the Φ fit, and those for a rotating system (see
#: ``n_steps`` of :class:`PotentialOptions`). On the exact cold disc of
#: ``benchmarks/disc_quality.py`` 4000 steps bring the median force error
#: from 0.52% to 0.19%; on the Plummer sphere 2000 are enough.
STEPS = 2000
ROTATING_STEPS = 4000

_KIND = "potential_fit"
# Extra draws allowed to fill the points inside a selection function, and the
# seed offset of each.
_SELECTION_ROUNDS = 4
_SELECTION_SEED = 7919
_RESIDUALS = ("log_f", "f")
_GAUGES = ("kepler", "center")


class DistributionFunction(Protocol):
    """What :func:`fit_potential` needs of a DF model (e.g. a ``FlowEnsemble``)."""

    def sample(self, n: int, *, seed: int | None = None): ...

    def grad_log_prob(self, x, v): ...

    def log_prob(self, x, v): ...


class Selection(Protocol):
    """What :func:`fit_potential` needs of a selection function.

    :class:`~gala_deeppotential.selection.BoundSelection` is one.
    """

    def interior(self, x: np.ndarray) -> np.ndarray: ...

    def grad_log(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True)
class PotentialOptions:
    r"""How :func:`fit_potential` fits :math:`\Phi_\theta`.

    Parameters
    ----------
    n_samples : int
        Points drawn from a DF model (ignored for :class:`DFGradients`).
    residual : {"log_f", "f"}
        Which stationarity residual is minimised. ``"log_f"`` (default),
        :math:`\partial \ln f/\partial t` from :math:`\nabla \ln f`: every
        point counts equally, so the outskirts, where f is tiny, still
        constrain the forces. ``"f"``, the paper's
        :math:`\partial f/\partial t` from :math:`\nabla f`, with f divided
        by its median over the points so the loss does not depend on the
        units of f.
    negative_density_weight : float
        Weight :math:`\lambda` of the penalty on negative mass density
        (Green & Ting 2020, Eq. 3).
    n_steps : int, optional
        Optimiser steps. By default :data:`STEPS` (2000), or
        :data:`ROTATING_STEPS` (4000) for a rotating system: one whose
        points' fitted rotation curve (see
        :func:`~gala_deeppotential.standardizer.fit_rotation_curve`) removes
        more than
        :data:`~gala_deeppotential.standardizer.ROTATION_VARIANCE_FRACTION`
        of their velocity variance. In a cold disc the radial and vertical
        forces are constrained only through the small radial and vertical
        velocities, and the fit converges more slowly. The
        :attr:`PotentialFit.config` records the number used.
    batch_size, lr : int, float
        Points per step and peak learning rate of RAdam.
    warmup_fraction : float
        Fraction of steps with a linear learning-rate warm-up; a cosine decay
        follows.
    weight_decay, grad_clip : float
        L2 weight decay and the gradient-norm clip.
    average_fraction : float
        Length, as a fraction of ``n_steps``, of an exponential moving
        average of the weights, which is what is validated and returned: a
        decay per step of 1 - 1 / (``average_fraction`` * ``n_steps``),
        0.99 for 2000 steps. 0 returns the raw weights.
    validation_fraction : float
        Held-out fraction of points; the weights with the lowest validation
        loss are kept.
    eval_every : int
        Steps between validation checks.
    n_hidden, n_layers, activation, radial
        Architecture of :class:`~gala_deeppotential.nn.PotentialNet`;
        ``radial=True`` (the default) adds the radius as an input, which lets
        Φ follow a central density cusp; ``radial=False`` is the paper's
        network of :math:`\vec{x}` alone. For a local volume (points whose
        median position is farther from the origin than their median
        distance from it, such as a survey around the Sun) the network is
        centred on the points' median and has no radial input, since the
        cusp lies outside the data.
    radial_softening : float, optional
        Softening of the radial input, in units of the median radius of the
        points. By default the radius inside which lie
        :data:`SOFTENING_QUANTILE` of the points (at least
        :data:`~gala_deeppotential.nn.RADIAL_SOFTENING`): where no points
        constrain Φ, the network then has no kink, and the density stays
        finite.
    gauge : {"kepler", "center"}
        How the additive constant of :math:`\Phi` is fixed (see
        :func:`fix_gauge`). A local volume cannot see the Keplerian fall-off,
        so there ``"center"`` is used: :math:`\Phi = 0` at the network's
        centre.
    max_restarts : int
        Restarts allowed when the fit fails. The fit has failed when, after
        a quarter of the steps, it has collapsed (the median scaled force
        :math:`|\nabla\Phi| s_x / s_v^2` is below 0.01 and the validation
        loss no better than 90% of that of a constant potential), or diverged
        (the loss is 1.5 times that of a constant potential, or not finite).
        It then restarts from fresh weights with 0.3 times the learning rate
        and no weight decay (the usual culprits), and warns with a
        :class:`PotentialCollapseWarning`.
    """

    n_samples: int = 2**15
    residual: str = "log_f"
    negative_density_weight: float = 2.0
    n_steps: int | None = None
    batch_size: int = 1024
    lr: float = 1e-2
    warmup_fraction: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    average_fraction: float = 0.05
    validation_fraction: float = 0.1
    eval_every: int = 100
    n_hidden: int = 128
    n_layers: int = 3
    activation: str = "silu"
    radial: bool = True
    radial_softening: float | None = None
    gauge: str = "kepler"
    max_restarts: int = 3

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.residual not in _RESIDUALS:
            raise ValueError(f"residual must be 'log_f' or 'f', got {self.residual!r}")
        if self.gauge not in _GAUGES:
            raise ValueError(f"gauge must be 'kepler' or 'center', got {self.gauge!r}")
        if not 0 <= self.average_fraction < 1:
            raise ValueError(
                f"average_fraction must be in [0, 1) (0 turns it off), "
                f"got {self.average_fraction}"
            )


@dataclass(frozen=True)
class DFGradients:
    r"""A DF's gradients at phase-space points: what the Φ fit is trained on.

    Attributes
    ----------
    x, v : :class:`numpy.ndarray`, shape (N, 3)
        Positions and velocities, in one unit system.
    grad_x, grad_v : :class:`numpy.ndarray`, shape (N, 3)
        :math:`\nabla_x \ln f` and :math:`\nabla_v \ln f` at them (or the
        gradients of f, for the ``"f"`` residual), in the same units.

    Examples
    --------
    Exact gradients of the Plummer DF, for a fit with no flow error:

    >>> from gala_deeppotential.mocks import PlummerTruth
    >>> truth = PlummerTruth()
    >>> x, v = truth.sample(1000, seed=1)
    >>> points = DFGradients(x, v, *truth.grad_log_f(x, v))
    >>> len(points)
    1000
    """

    x: np.ndarray
    v: np.ndarray
    grad_x: np.ndarray
    grad_v: np.ndarray

    def __post_init__(self) -> None:
        names = ("x", "v", "grad_x", "grad_v")
        arrays = [as_float64(getattr(self, name)) for name in names]
        check_rows(names, arrays, "points to fit Φ")
        for name, array in zip(names, arrays, strict=True):
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return self.x.shape[0]

    @classmethod
    def from_df(
        cls,
        df: DistributionFunction,
        n: int,
        *,
        seed: int | None = 0,
        residual: str = "log_f",
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> DFGradients:
        r"""Draw ``n`` points from a DF model and take its gradients there.

        For ``residual="f"`` the gradients are of f, divided by the median
        :math:`|\nabla_v f|` so that their scale does not depend on the units
        of f (the residual is linear in them). ``keep``, a function of the
        positions ``(n, 3)`` that returns a boolean mask, drops points before
        their gradients are taken (which cost far more than the draws), so
        that fewer than ``n`` may be returned.
        """
        for name in ("sample", "grad_log_prob", "log_prob"):
            if not callable(getattr(df, name, None)):
                raise TypeError(
                    "df must be a DF model with .sample, .grad_log_prob and "
                    ".log_prob (e.g. a FlowEnsemble), or DFGradients; "
                    f"{type(df).__name__} has no .{name}"
                )
        x, v = df.sample(n, seed=seed)
        if keep is not None:
            inside = np.asarray(keep(as_float64(x)), dtype=bool)
            if isinstance(x, torch.Tensor):
                inside = torch.as_tensor(inside, device=x.device)
            x, v = x[inside], v[inside]
        grad_x, grad_v = df.grad_log_prob(x, v)
        arrays = [as_float64(a) for a in (x, v, grad_x, grad_v)]
        if residual == "f":
            f = np.exp(as_float64(df.log_prob(x, v)))[:, None]
            grad_x, grad_v = f * arrays[2], f * arrays[3]
            check_rows(("grad_x", "grad_v"), [grad_x, grad_v], "points to fit Φ")
            norm = np.median(np.linalg.norm(grad_v, axis=1))
            arrays[2:] = [grad_x / norm, grad_v / norm]
        return cls(*arrays)


@dataclass
class PotentialFit:
    r"""The Φ stage's result: the trained network and how it was fitted.

    :func:`fit_potential` returns it, and
    :func:`~gala_deeppotential.virial.calibrate` returns a calibrated copy;
    :meth:`DeepPotential.from_fit <gala_deeppotential.DeepPotential.from_fit>`
    wraps it as a gala potential. The whole pipeline's result, with the DF
    and the catalogue's record as well, is
    :class:`~gala_deeppotential.FitResult`.

    Attributes
    ----------
    net : :class:`~gala_deeppotential.nn.PotentialNet`
        The trained network, with its gauge constant set, in the caller's units.
    data_radius : float
        Radius (caller's length unit) that holds 99% of the fitted points,
        about the network's centre (the origin, unless the points are a local
        volume, see :func:`~gala_deeppotential.radial_map.local_center`); the
        potential is constrained only within about this radius of it.
    gauge : dict
        How the additive constant was fixed (see :func:`fix_gauge`).
    history : dict of str to list
        ``step``, ``train_loss``, ``val_loss``, ``grad_phi`` (median scaled
        :math:`|\nabla\Phi|` on the validation points), ``restarts`` and,
        when it is fitted, ``pattern_speed`` (the caller's units).
    config : dict
        The settings of the fit (:class:`PotentialOptions` and the seed),
        JSON-able.
    wall_s : float
        Wall-clock seconds of the fit.
    virial : dict
        The virial calibration, as
        :func:`~gala_deeppotential.virial.calibrate` records it: empty if
        none was tried, else whether its scale was ``applied``, the scale,
        its error, and why it was declined if it was.
    """

    net: PotentialNet
    data_radius: float
    gauge: dict[str, Any]
    history: dict[str, list]
    config: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    virial: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit to a safe model file (see :mod:`gala_deeppotential.io`)."""
        tensors, net_config = self.net.to_state()
        metadata = {
            "net_config": net_config,
            "data_radius": self.data_radius,
            "gauge": self.gauge,
            "history": self.history,
            "config": self.config,
            "wall_s": self.wall_s,
            "virial": self.virial,
        }
        return io.save(path, kind=_KIND, tensors=tensors, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PotentialFit:
        """Read a fit written by :meth:`save`."""
        tensors, meta = io.load(path, kind=_KIND)
        return cls(
            net=PotentialNet.from_state(tensors, meta["net_config"]).eval(),
            data_radius=meta["data_radius"],
            gauge=meta["gauge"],
            history=meta["history"],
            config=meta["config"],
            wall_s=meta["wall_s"],
            virial=meta["virial"],
        )


def fit_potential(
    df: DistributionFunction | DFGradients | Sequence[np.ndarray],
    options: PotentialOptions | Mapping[str, Any] | None = None,
    *,
    seed: int | None = 0,
    device: str | torch.device | None = "cpu",
    threads: int | None = None,
    progress: bool = True,
    selection: Selection | None = None,
    intrinsic_df: bool = False,
    pattern_speed: float | str | None = None,
    **overrides: Any,
) -> PotentialFit:
    r"""Fit :math:`\Phi_\theta` so that the DF is stationary, with non-negative density.

    Minimises the loss of Green & Ting (2020), Eq. 3
    (:func:`~gala_deeppotential.cbe.cbe_loss`), over phase-space points drawn
    from the DF, with the DF gradients computed once and cached. The loss is
    evaluated in the network's natural units, lengths over :math:`s_x` (the
    median radius) and velocities over :math:`s_v` (the root median square
    speed), so it does not depend on the caller's units. The additive
    constant is then fixed by the chosen gauge (:func:`fix_gauge`).

    The forces of a fit to a *fitted* DF come out slightly weak (see
    :func:`~gala_deeppotential.virial.calibrate`, which corrects their
    overall strength from the stars; :func:`~gala_deeppotential.fit` does
    both).

    Parameters
    ----------
    df : DF model, :class:`DFGradients` or 4-tuple of arrays
        A DF with ``sample(n, seed=)``, ``grad_log_prob(x, v)`` and
        ``log_prob(x, v)`` (a :class:`~gala_deeppotential.FlowEnsemble`),
        sampled at ``n_samples`` points; or its gradients at given points, as
        :class:`DFGradients` or the tuple ``(x, v, grad_x, grad_v)``.
    options : :class:`PotentialOptions` or dict, optional
        The settings; the defaults are the measured ones.
    seed : int, optional
        Seed for the sampling, weights and batches.
    device : {"cpu", "cuda"}
        Where to train.
    threads : int, optional
        torch intra-op threads for the fit.
    progress : bool
        Show a tqdm progress bar.
    selection : :class:`~gala_deeppotential.selection.BoundSelection`, optional
        The selection function the DF was observed through. Points are kept
        only inside it, away from its edges
        (:meth:`~gala_deeppotential.selection.BoundSelection.interior`; more
        are drawn from a DF model to make up ``n_samples``), and
        :math:`\nabla \ln S` is subtracted from :math:`\nabla_x \ln f`
        (see :mod:`gala_deeppotential.selection`), unless ``intrinsic_df``.
    intrinsic_df : bool
        Whether the DF models the stationary :math:`f` itself rather than the
        observed :math:`f S` (flows trained on the truncated likelihood, see
        :mod:`gala_deeppotential.truncation`): then :math:`\nabla \ln S` is
        not subtracted.
    pattern_speed : float or "fit", optional
        For a DF that is stationary in a frame rotating about the z axis (a
        bar, spiral arms): its pattern speed :math:`\Omega_p`, in the units
        of ``v / x`` (positive is counterclockwise seen from +z), or
        ``"fit"`` to fit it together with :math:`\Phi` (from 0). The
        stationarity residual then has the rotation term (see
        :func:`~gala_deeppotential.cbe.stationarity_residual`), the
        network holds :math:`\Omega_p` (``fit.net.pattern_speed``) and
        :math:`\Phi` is that of the rotating frame, at the instant the
        frames coincide. ``None`` (default): a static potential.
    **overrides
        Fields of :class:`PotentialOptions` (``n_steps=500``, ...).

    Returns
    -------
    fit : :class:`PotentialFit`

    Raises
    ------
    RuntimeError
        If the fit still collapses after ``max_restarts`` restarts.

    Examples
    --------
    >>> from gala_deeppotential.mocks import PlummerTruth
    >>> truth = PlummerTruth()
    >>> x, v = truth.sample(2048, seed=1)
    >>> fit = fit_potential((x, v, *truth.grad_log_f(x, v)), n_steps=50, progress=False)
    >>> fit.gauge["gauge"]
    'kepler'
    """
    options = resolve_options(PotentialOptions, options, **overrides)
    device = resolve_device(device)
    start = time.perf_counter()
    with torch_threads(threads):
        points = _training_points(
            df, options, seed, None if selection is None else selection.interior
        )
        if selection is not None:
            points = _select(points, selection, df, options, seed, intrinsic_df)
        if options.n_steps is None:
            options = dataclasses.replace(options, n_steps=_default_steps(points))
        net_kwargs = _network_settings(points, options)
        net_kwargs["pattern_speed"] = check_pattern_speed(pattern_speed)
        history: dict[str, list] = {"restarts": []}
        net = fit_with_restarts(
            points, net_kwargs, options, history, seed, device, progress
        )
        net = net.cpu().eval()
        radii = np.linalg.norm(points.x - net.center.numpy(), axis=1)
        r_edge = float(np.quantile(radii, 0.95))
        gauge = options.gauge if net_kwargs["center"] is None else "center"
        gauge_info = fix_gauge(net, gauge, r_edge)
    return PotentialFit(
        net=net,
        data_radius=float(np.quantile(radii, 0.99)),
        gauge=gauge_info,
        history=history,
        config={
            **options_dict(options),
            "seed": seed,
            "pattern_speed": net_kwargs["pattern_speed"],
        },
        wall_s=time.perf_counter() - start,
    )


def fix_gauge(net: PotentialNet, gauge: str, r_edge: float) -> dict[str, Any]:
    r"""Set ``net.phi_offset`` by a gauge, in place; return a JSON-able record.

    ``"kepler"`` makes :math:`\Phi \to 0` at infinity by matching a Keplerian
    tail at the edge of the data: at :math:`r_e` (``r_edge``, the
    95th-percentile radius of the fitted points) the angle-averaged
    :math:`\Phi(r_e) = -\langle g_r(r_e)\rangle r_e`. ``"center"`` sets
    :math:`\Phi = 0` at the network's centre (the origin, unless it was
    fitted to a local volume).
    """
    with torch.no_grad():
        net.phi_offset.zero_()
        if gauge == "center":
            phi0 = float(net(net.center[None])[0])
            net.phi_offset.fill_(-phi0)
            return {"gauge": "center", "center": net.center.tolist()}
        dirs = sphere_directions(512)
        pts = torch.as_tensor(r_edge * dirs, dtype=net.phi_scale.dtype)
        phi, grad = net.value_and_grad(pts)
        g_r = float((grad * torch.as_tensor(dirs, dtype=grad.dtype)).sum(1).mean())
        offset = -g_r * r_edge - float(phi.mean())
        net.phi_offset.fill_(offset)
    return {"gauge": "kepler", "r_edge": r_edge, "mass_edge_over_G": g_r * r_edge**2}


def check_rows(names: tuple[str, ...], arrays: list[np.ndarray], what: str) -> None:
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


def as_float64(a: Any) -> np.ndarray:
    """A tensor or array as a float64 numpy array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _training_points(
    df,
    options: PotentialOptions,
    seed: int | None,
    keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DFGradients:
    """The points and gradients to fit, drawn from a DF model (those of its
    draws that ``keep`` passes) or as given."""
    if isinstance(df, DFGradients):
        return df
    if isinstance(df, tuple | list):
        if len(df) != 4:
            raise ValueError(
                "pass (x, v, grad_x, grad_v) as four (N, 3) arrays, "
                f"or a DF model; got a sequence of {len(df)}"
            )
        return DFGradients(*df)
    return DFGradients.from_df(
        df, options.n_samples, seed=seed, residual=options.residual, keep=keep
    )


def _default_steps(points: DFGradients) -> int:
    """:data:`ROTATING_STEPS` for a rotating system's points, else :data:`STEPS`."""
    _, _, removed = fit_rotation_curve(np.hstack([points.x, points.v]))
    return ROTATING_STEPS if removed > ROTATION_VARIANCE_FRACTION else STEPS


def _network_settings(points: DFGradients, options: PotentialOptions) -> dict:
    """Keywords of :class:`PotentialNet`, with its scales taken from the points."""
    center = local_center(points.x)
    radial = options.radial and center is None
    radii = np.linalg.norm(points.x - (0 if center is None else center), axis=1)
    length = float(np.median(radii))
    softening = options.radial_softening
    if softening is None:
        inner = float(np.quantile(radii, SOFTENING_QUANTILE)) / length
        softening = max(inner, RADIAL_SOFTENING)
    return {
        "n_hidden": options.n_hidden,
        "n_layers": options.n_layers,
        "activation": options.activation,
        "radial": radial,
        "radial_softening": softening,
        "length_scale": length,
        "phi_scale": float(np.median(np.sum(points.v**2, axis=1))),
        "center": None if center is None else tuple(float(c) for c in center),
    }


def _select(
    points: DFGradients,
    selection: Selection,
    df: Any,
    options: PotentialOptions,
    seed: int | None,
    intrinsic_df: bool = False,
) -> DFGradients:
    r"""The points inside the selection, topped up from a DF model, with
    the gradients of the stationary DF: :math:`\nabla\ln f_{obs} - \nabla\ln S`,
    or those of the DF model as they are if it is ``intrinsic_df``.

    Points drawn from a DF model arrive already inside (``from_df`` with
    ``keep``); with n of them wanted and k kept so far, each top-up draws
    1.2 (n - k) n / k + ``MIN_POINTS``."""
    names = ("x", "v", "grad_x", "grad_v")
    model = not isinstance(df, DFGradients | tuple | list)
    if model:
        parts = [[getattr(points, name) for name in names]]
    else:
        keep = selection.interior(points.x)
        parts = [[getattr(points, name)[keep] for name in names]]
    have = len(parts[0][0])
    target = options.n_samples if model else len(points)
    rounds = 0
    while model and have < target:
        if rounds == _SELECTION_ROUNDS or have == 0:
            raise ValueError(
                f"only {have} of {target * (rounds + 1)} points drawn from the DF lie "
                "inside the selection function: the selection does not match the "
                "stars; check the selection and its margin"
            )
        rounds += 1
        extra_seed = None if seed is None else seed + _SELECTION_SEED * rounds
        want = int(1.2 * (target - have) * target / have) + MIN_POINTS
        extra = DFGradients.from_df(
            df,
            want,
            seed=extra_seed,
            residual=options.residual,
            keep=selection.interior,
        )
        parts.append([getattr(extra, name) for name in names])
        have += len(extra)
    x, v, grad_x, grad_v = (
        np.concatenate([part[i] for part in parts])[:target] for i in range(4)
    )
    if not intrinsic_df:
        grad_x = grad_x - selection.grad_log(x)
    return DFGradients(x, v, grad_x, grad_v)
