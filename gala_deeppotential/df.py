"""The distribution function: an ensemble of normalizing flows, the model itself.

Training lives in :mod:`gala_deeppotential.training`; this module holds what
a fitted ensemble is and does: its architecture (:class:`FlowOptions`), its
density, gradients and samples, its members, and its model file.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_N_FLOWS",
    "MIN_STARS",
    "FlowEnsemble",
    "FlowOptions",
]

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import io
from .ball_map import BallMap
from .flows import BatchedFlow, FactorizedFlow, build_flow, flow_class
from .options import coerce_fields, options_dict, resolve_options
from .runtime import resolve_device
from .standardizer import Standardizer

Flow = BatchedFlow | FactorizedFlow

#: Default ensemble size K (``docs/record.md`` has how it was chosen).
DEFAULT_N_FLOWS = 16

MIN_STARS = 1000
"""Fewest stars a flow fit accepts.

With the default 10% validation split, 1000 stars leave 100 for early
stopping, where the validation loss has a standard error of about 0.2 nats
(ln f of a 6-D Gaussian has a spread of sqrt(3) = 1.7 nats); fewer stars make
the stopping epoch, and so the fitted DF, mostly noise. The method is meant
for :math:`10^4`--:math:`10^6` stars.
"""

_KIND = "flow_ensemble"
# Points (summed over members) in one batched evaluation. It bounds memory
# for any N (about 8 kB per point with autograd), and measured fastest here:
# 2^13 beat 2^11 by 20% and 2^15 by 50% for the gradients, which stay in cache.
_EVAL_POINTS = 2**13
# History entries that hold one row per epoch of K per-member values.
_PER_MEMBER_ROWS = ("train_loss", "val_loss")


@dataclass(frozen=True, kw_only=True)
class FlowOptions:
    r"""The architecture of a :class:`FlowEnsemble`.

    Parameters
    ----------
    n_flows : int
        Number of members K.
    n_transforms : int
        Blocks per member, each a rescaling, an LU linear map and a spline
        coupling (see :class:`~gala_deeppotential.flows.BatchedFlow`).
    n_bins : int
        Spline bins.
    hidden_features, n_hidden_layers : int
        Width and depth of each coupling conditioner.
    tail_bound : float
        Half-width of the spline box, in standardized units.
    activation : {"silu", "relu"}
        Conditioner nonlinearity; the smooth SiLU gives smoother gradients of
        ln f.
    asinh_axes : tuple of int
        Heavy-tailed axes of the data, passed through an asinh by the
        :class:`~gala_deeppotential.standardizer.Standardizer`; the positions
        by default.
    rotation : bool, optional
        Subtract a fitted mean rotation about the z axis from the velocities
        before the flows (see
        :class:`~gala_deeppotential.standardizer.Standardizer`): ``True``
        always, ``None`` when it removes more than
        :data:`~gala_deeppotential.standardizer.ROTATION_VARIANCE_FRACTION`
        of the velocity variance, ``False`` (the default) never. On the cold
        disc of ``benchmarks/disc_quality.py`` the flows did better without
        it (forces 1.33-1.60% against 1.75-1.89% over three seeds). The
        fitted ensemble's ``standardizer`` records it.
    radial_profile : bool, optional
        Map the positions through a
        :class:`~gala_deeppotential.radial_map.RadialProfileMap` before the
        flows: a fitted radial density profile becomes a unit Gaussian, so
        the flows learn only the departures from it, and a cusp (or a core's
        curvature) is not smoothed away. The positions then skip the asinh.
        ``True`` always, ``False`` never, ``None`` (the default) where the
        stars surround their centre, do not rotate and have a density cusp
        (see :meth:`~gala_deeppotential.standardizer.Standardizer.fit`).
    velocity_ellipsoid : bool, optional
        Map the velocities through a
        :class:`~gala_deeppotential.radial_map.VelocityEllipsoidMap` before
        the flows: their radial and tangential parts are divided by the
        stars' fitted dispersions at each radius, so that an anisotropic
        sphere's velocity ellipsoid, which turns with position, becomes about
        a unit sphere everywhere. ``True`` always, ``False`` never, ``None``
        (the default) where the stars surround their centre, do not rotate
        and are measurably anisotropic (see
        :meth:`~gala_deeppotential.standardizer.Standardizer.fit`): isotropic
        spheres, discs, bars and local volumes are left as they are.
    ball_map : bool
        For exact positions that fill a ball (a catalogue limited in
        distance, whose ball :func:`~gala_deeppotential.training.train_flows`
        is given, fitted with the plain likelihood): map them through a
        :class:`~gala_deeppotential.ball_map.BallMap` before the flows, which
        takes the ball onto all of space, so that the flows never model the
        step at its surface and put no star beyond it (see
        :class:`~gala_deeppotential.standardizer.Standardizer`); training
        refuses it where there is no such ball. Off by default: on the local
        volume of ``benchmarks/survey_quality.py`` it halved the error of
        the vertical force 1.1 kpc from the plane but doubled that of the
        local density, with the median force error unchanged
        (``docs/record.md``).
    factorization : {"joint", "conditional"}
        Each member as one flow over the six coordinates (``"joint"``, as
        in Green & Ting 2020), or as a flow of the positions times a flow of
        the velocities conditioned on the positions,
        :math:`p_k(x)\, p_k(v \mid x)` (``"conditional"``; see
        :class:`~gala_deeppotential.flows.FactorizedFlow`).
    """

    n_flows: int = DEFAULT_N_FLOWS
    n_transforms: int = 4
    n_bins: int = 8
    hidden_features: int = 64
    n_hidden_layers: int = 2
    tail_bound: float = 5.0
    activation: str = "silu"
    asinh_axes: tuple[int, ...] = (0, 1, 2)
    rotation: bool | None = False
    radial_profile: bool | None = None
    velocity_ellipsoid: bool | None = None
    ball_map: bool = False
    factorization: str = "joint"

    def __post_init__(self) -> None:
        flow_class(self.factorization)  # refuse unknown names before any fit
        if int(self.n_flows) != self.n_flows or self.n_flows < 1:
            raise ValueError(
                f"n_flows must be a positive integer, got {self.n_flows!r}"
            )
        coerce_fields(self)


# The fields of FlowOptions that set the standardizer, not the flows.
_STANDARDIZER_SETTINGS = (
    "asinh_axes",
    "rotation",
    "radial_profile",
    "velocity_ellipsoid",
)
# ... and the one that says whether it maps a ball the stars fill.
_BALL_SETTING = "ball_map"


class FlowEnsemble:
    r"""An ensemble of K normalizing flows as a phase-space distribution function.

    The ensemble density is the mean of its members' densities,

    .. math::

        f(x, v) = \frac{1}{K} \sum_{k=1}^{K} f_k(x, v), \qquad
        f_k(y) = p_k\big(s(y)\big)\,
            \left|\det \frac{\partial s}{\partial y}\right|,

    where :math:`y = (x, v)`, :math:`s(y)` is the
    :class:`~gala_deeppotential.standardizer.Standardizer` fitted to the
    training data and :math:`p_k` is member k, a spline flow (see
    :class:`~gala_deeppotential.flows.BatchedFlow`). Members are trained
    independently by maximum likelihood
    (:func:`~gala_deeppotential.training.train_flows`) but batched into one
    module, so K members cost far less than K times one. All densities are in
    the caller's coordinates and units: f integrates to one over phase space.

    Parameters
    ----------
    options : :class:`FlowOptions` or dict, optional
        The architecture; the defaults are the measured ones.
    device : str or :class:`torch.device`
        ``"cpu"``, ``"cuda"`` (or ``"gpu"``), or ``"cuda:1"`` etc.
    **overrides
        Fields of :class:`FlowOptions` (``n_flows=8``, ...).

    Attributes
    ----------
    options : :class:`FlowOptions`
    flow : BatchedFlow, FactorizedFlow or None
        The members, once fitted or loaded (see
        :mod:`gala_deeppotential.flows`).
    standardizer : :class:`~gala_deeppotential.standardizer.Standardizer` or None
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
        options: FlowOptions | Mapping[str, Any] | None = None,
        *,
        device: str | torch.device = "cpu",
        **overrides: Any,
    ) -> None:
        self.options = resolve_options(FlowOptions, options, **overrides)
        self.device = resolve_device(device)
        self.flow: Flow | None = None
        self.standardizer: Standardizer | None = None
        self.history: dict[str, list] = empty_history()

    @property
    def config(self) -> dict[str, Any]:
        """The architecture as a JSON-able dict (what the model file records)."""
        return options_dict(self.options)

    @property
    def n_flows(self) -> int:
        """Number of members K."""
        return self.options.n_flows

    def __len__(self) -> int:
        return self.n_flows

    def __repr__(self) -> str:
        state = "fitted" if self.flow is not None else "not fitted"
        return f"FlowEnsemble(n_flows={self.n_flows}, device={self.device}, {state})"

    def build_flow(self, seed: int, first_member: int = 0) -> Flow:
        """Freshly initialised members of this architecture, on :attr:`device`.

        Member k starts as member ``first_member + k`` of any ensemble with
        this ``seed`` (see :class:`~gala_deeppotential.flows.BatchedFlow`).
        """
        architecture = options_dict(self.options)
        n_members = architecture.pop("n_flows")
        for name in (*_STANDARDIZER_SETTINGS, _BALL_SETTING):
            del architecture[name]
        return build_flow(
            6,
            n_members=n_members,
            seed=seed,
            first_member=first_member,
            **architecture,
        ).to(self.device)

    def fit_standardizer(
        self, data: np.ndarray | torch.Tensor, ball: BallMap | None = None
    ) -> Standardizer:
        """A :class:`~gala_deeppotential.standardizer.Standardizer` fitted to
        ``data`` (N, 6) with this ensemble's settings of it; ``ball``, the
        ball the positions fill, is mapped if ``ball_map`` is True."""
        return Standardizer.fit(
            data,
            **{name: getattr(self.options, name) for name in _STANDARDIZER_SETTINGS},
            ball=ball if self.options.ball_map else None,
        )

    def fit(self, data: np.ndarray | torch.Tensor, **settings: Any) -> FlowEnsemble:
        """Fit every member to ``data``: :func:`.training.train_flows` on this model.

        Returns
        -------
        self : :class:`FlowEnsemble`
        """
        from .training import train_flows

        return train_flows(self, data, **settings)

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
        out = FlowEnsemble(self.options, n_flows=len(members), device=self.device)
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
        out = cls(first.options, n_flows=flow.n_members, device=first.device)
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
        tensors, meta = io.load(path, kind=_KIND, device=str(resolve_device(device)))
        config = dict(meta["config"])
        if "n_steps" in config:  # model files of version 0.1 name it so
            config["n_transforms"] = config.pop("n_steps")
        out = cls(config, device=device)
        out.flow = out.build_flow(seed=0)
        out.flow.load_state_dict(tensors)
        out.standardizer = Standardizer.from_dict(meta["standardizer"])
        out.history = meta["history"]
        return out


def empty_history() -> dict[str, list]:
    """The training history of an ensemble before its first epoch."""
    return {"epoch": [], "train_loss": [], "val_loss": [], "lr": [], "wall_s": []}


def phase_space_tensor(
    data: np.ndarray | torch.Tensor, *, missing_velocities: bool = False
) -> torch.Tensor:
    """Validate an (N, 6) sample and return it as a float64 CPU tensor.

    With ``missing_velocities``, rows whose three velocities are all NaN (a
    star without a radial velocity) are accepted.
    """
    if isinstance(data, torch.Tensor):
        y = data.detach().to("cpu", torch.float64)
    else:
        y = torch.as_tensor(np.asarray(data, dtype=np.float64))
    if y.ndim != 2 or y.shape[1] != 6:
        raise ValueError(
            "data must be an (N, 6) array of positions then velocities "
            f"(x, y, z, v_x, v_y, v_z); got shape {tuple(y.shape)}"
        )
    finite = torch.isfinite(y)
    good = finite.all(dim=1)
    if missing_velocities:
        good |= finite[:, :3].all(dim=1) & torch.isnan(y[:, 3:]).all(dim=1)
        if not bool(finite.all(dim=1).any()):
            raise ValueError("no row of data has finite velocities")
    bad = (~good).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"{len(bad)} rows of data hold NaN or inf (rows {bad[:5].tolist()}"
            f"{', ...' if len(bad) > 5 else ''}); drop them before fitting"
        )
    if len(y) < MIN_STARS:
        raise ValueError(
            f"{len(y)} stars are too few to fit a distribution function; "
            f"at least {MIN_STARS} are needed (gala_deeppotential.df.MIN_STARS)"
        )
    return y
