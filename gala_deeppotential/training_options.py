"""The flows' training settings, and the ones decided from the stars.

:class:`TrainingOptions` (and :class:`DFOptions`, which adds the flows'
architecture) hold what :func:`~.training.train_flows` does;
:func:`epochs_for` and :func:`truncation_for` turn the settings left at
``None`` into the measured choice for the stars at hand.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_EPOCHS",
    "LOCAL_EPOCHS",
    "DFOptions",
    "TrainingOptions",
    "epochs_for",
    "truncation_for",
]

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .df import FlowOptions
from .options import coerce_fields
from .radial_map import local_center

#: Default training length in epochs (``docs/record.md`` has how it was chosen).
DEFAULT_EPOCHS = 16
#: Default training length for a local volume (see :func:`epochs_for`).
LOCAL_EPOCHS = 32


@dataclass(frozen=True, kw_only=True)
class TrainingOptions:
    r"""How the flows are trained (:func:`~.training.train_flows`).

    Parameters
    ----------
    epochs : int, optional
        Passes over the training stars; sets the length of the schedule.
        ``None`` (the default): :data:`DEFAULT_EPOCHS`, or
        :data:`LOCAL_EPOCHS` for a local volume without measurement errors
        to deconvolve (see :func:`epochs_for`).
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
        when all have stopped. Not used with the truncated likelihood,
        whose members keep their final weights.
    clip_norm : float
        Maximum gradient norm, per member.
    jitter : float
        Standard deviation of Gaussian noise added to the standardized
        training stars, fresh in every epoch and for every member (the
        validation stars stay clean). It smooths what the flows learn from
        a finite sample, at the price of a bias of order ``jitter**2``.
    time_limit : float, optional
        Wall-clock budget in seconds, including resumed time. The schedule
        then follows whichever of the epoch or time budget runs out first,
        so results depend on machine speed.
    error_samples : int
        For a catalogue with measurement errors: Monte Carlo draws per star
        and step of the error-convolved likelihood (see
        :mod:`gala_deeppotential.deconvolution`); each step costs about as
        much as this many plain ones.
    error_epochs : int, optional
        For a catalogue with measurement errors: train only the last this
        many epochs on the error-convolved likelihood, and the ones before
        on the measured values as they are, which costs a plain epoch each.
        The flows then begin deconvolving from the error-broadened DF.
        Validation always uses the error-convolved likelihood, so that the
        best epoch is chosen by one measure. ``None``: every epoch.
    rv_samples : int
        For a catalogue whose stars lack some radial velocities (and give
        :func:`~.training.train_flows` their proper motions as ``noisy``):
        draws per star and step of each missing radial velocity, which is
        integrated out so that the star's tangential velocity informs the DF (see
        :mod:`gala_deeppotential.sightlines`); 0 leaves such a star to
        inform only the positions' density. With measurement errors the
        draws per star are the larger of this and ``error_samples``.
    truncated : bool, optional
        For stars seen through a selection function :math:`S(x)` (given to
        :func:`~.training.train_flows` as ``selection``; without one this
        does nothing): fit the flows to the truncated likelihood
        :math:`f S / \int f S` (see :mod:`gala_deeppotential.truncation`),
        so that they model the DF :math:`f` itself, smooth across the
        selection's edges, rather than :math:`f S` with its edges. Each
        step then also draws ``selection_draws`` points from every member.
        ``None`` (the default): wherever a selection is given, except a
        distance limit alone with the positions mapped through its ball
        (``ball_map``) and no errors to deconvolve. Where measurement
        errors are deconvolved, a star's draws of its true position cross
        the selection's edges; there S weights each draw, and the flows do
        not learn the edge blurred by the errors as part of the DF (see
        :func:`truncation_for`).
    selection_draws : int
        Draws per member and step that estimate :math:`\ln \int f S`, a
        multiple of 16 (``flows.ROW_MULTIPLE``).
    """

    epochs: int | None = None
    batch_size: int = 512
    lr: float = 2e-3
    warmup_fraction: float = 0.05
    validation_fraction: float = 0.1
    patience: int = 10
    clip_norm: float = 10.0
    jitter: float = 0.0
    time_limit: float | None = None
    error_samples: int = 2
    error_epochs: int | None = None
    rv_samples: int = 2
    truncated: bool | None = None
    selection_draws: int = 256

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1:
            raise ValueError("validation_fraction must lie in (0, 1)")
        if int(self.error_samples) != self.error_samples or self.error_samples < 1:
            raise ValueError(
                f"error_samples must be a positive integer, got {self.error_samples!r}"
            )
        if int(self.rv_samples) != self.rv_samples or not (
            self.rv_samples == 0 or self.rv_samples >= 2
        ):
            raise ValueError(
                "rv_samples must be 0 (stars without a radial velocity inform "
                "only the positions) or an integer >= 2 (one draw's ln(p/q) is "
                "biased far towards the proposal), got "
                f"{self.rv_samples!r}"
            )
        for name in ("epochs", "error_epochs"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(
                    f"{name} must be a positive integer or None, got {value!r}"
                )
        if not self.jitter >= 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter!r}")
        coerce_fields(self)


@dataclass(frozen=True, kw_only=True)
class DFOptions(FlowOptions, TrainingOptions):
    """Every setting of the DF stage: the flows' architecture and their training.

    The fields of :class:`~gala_deeppotential.df.FlowOptions` and of
    :class:`TrainingOptions`, in one object, as
    :func:`~.training.fit_distribution_function`,
    :func:`gala_deeppotential.fit` and ``deep-potential fit --df-options``
    take them.

    Examples
    --------
    >>> DFOptions(n_flows=4, epochs=8).n_transforms
    4
    """

    def __post_init__(self) -> None:
        FlowOptions.__post_init__(self)
        TrainingOptions.__post_init__(self)


_Options = TypeVar("_Options", bound=TrainingOptions)


def truncation_for(
    options: _Options, noisy: Any, selection: Any, *, ball_map: bool | None = None
) -> _Options:
    r"""``options`` with ``truncated`` decided: ``None`` becomes a bool.

    The automatic choice fits the truncated likelihood wherever a selection
    function is given, except for a distance limit alone with the positions
    mapped through a ball (``ball_map``, which needs the flows to stop at
    the edge) and no errors to deconvolve. Without truncation the flows
    learn the observed DF with its edges and holes, and their gradients ring
    where the footprint cuts the volume; with errors a star's draws reach
    past the selection's edges, and weighting each by :math:`S` keeps the
    edge, blurred by the errors, out of the DF. On a local volume with
    Gaia-like errors this took the median force error from 3.3% to 2.8% and
    the local density's from 21% to 4%; through a footprint with a
    completeness falling with distance, the force error from 3.3% to 2.0%.
    For exact 6D stars within a distance limit it measured better on three
    draws (2.26%, 1.56% and 1.72% against 2.41%, 2.11% and 2.00%) for a
    third more time. With 70% of the radial velocities missing, the flows'
    median error in :math:`\nabla_x \ln f` in the outer shell of a 1.5 kpc
    volume (1.2–1.4 kpc) fell from 74% to 30% on 2¹⁵ stars (the complete
    catalogue's: 28%).

    Parameters
    ----------
    options : :class:`TrainingOptions` or :class:`DFOptions`
    noisy : NoisyAstrometry, MissingRadialVelocities or None
        The stars' draws, as :func:`~.training.train_flows` takes them;
        None for exact 6D stars, else only their ``has_errors`` is read.
    selection : callable or None
        The selection function, as :func:`~.training.train_flows` takes it,
        or the :class:`~gala_deeppotential.selection.BoundSelection` it
        comes from; its ``is_distance_limit`` is read where it has one.
    ball_map : bool, optional
        Whether the flows map positions through a ball (see
        :class:`~gala_deeppotential.df.FlowOptions`); by default
        ``options.ball_map`` where it has one, else False.

    Returns
    -------
    options : the same type as ``options``
        A copy with ``truncated`` a bool (``options`` itself if it was one).

    Examples
    --------
    >>> truncation_for(TrainingOptions(), noisy=None, selection=None).truncated
    False
    """
    if options.truncated is not None:
        return options
    if ball_map is None:
        ball_map = bool(getattr(options, "ball_map", False))
    if selection is None:
        truncated = False
    elif _deconvolved(noisy) or not getattr(selection, "is_distance_limit", False):
        truncated = True
    else:
        truncated = not ball_map
    return dataclasses.replace(options, truncated=truncated)


def epochs_for(options: _Options, x: np.ndarray, noisy: Any) -> _Options:
    """``options`` with ``epochs`` decided: ``None`` becomes a number.

    Stars that surround the centre of their coordinates train for
    :data:`DEFAULT_EPOCHS`; a local volume (a catalogue about the Sun, see
    :func:`~gala_deeppotential.radial_map.local_center`) for
    :data:`LOCAL_EPOCHS`. In a heliocentric volume the flows must resolve
    the thin disc's vertical structure, and after 16 epochs they are still
    improving (every member's best epoch is its last) and bias the local
    density and the vertical force low: on 2¹⁷ stars within 1.5 kpc of the
    Sun 32 epochs took the local density's error from 13% and 9.2% to 8.8%
    and 4.9% (two draws) and halved the error of K_z at 1.1 kpc, whereas on
    a Plummer sphere they sharpened the density and made the forces worse.
    Through a footprint (:math:`|b| > 10°`, completeness falling with distance)
    they kept the median force error (3.31% against 3.27%) and took the
    local density's from 33% to 9.6%. Where measurement errors are
    deconvolved the flows keep :data:`DEFAULT_EPOCHS`: every epoch on the
    error-convolved likelihood costs ``error_samples`` plain ones, and
    training the first 16 of 32 on the measured values left the DF
    broadened (forces 4.2% against 2.75%).

    Parameters
    ----------
    options : :class:`TrainingOptions` or :class:`DFOptions`
    x : array, shape (N, 3)
        The stars' positions about the centre of their coordinates (the
        Galactic centre), in any units.
    noisy : NoisyAstrometry, MissingRadialVelocities or None
        The stars' draws, as :func:`~.training.train_flows` takes them;
        only their ``has_errors`` is read.

    Returns
    -------
    options : the same type as ``options``
        A copy with ``epochs`` an int (``options`` itself if it was one).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> epochs_for(TrainingOptions(), rng.normal(size=(100, 3)), None).epochs
    16
    >>> sun = [-8.1, 0.0, 0.02] + 0.5 * rng.normal(size=(100, 3))
    >>> epochs_for(TrainingOptions(), sun, None).epochs
    32
    """
    if options.epochs is not None:
        return options
    local = local_center(np.asarray(x, dtype=float)) is not None
    epochs = LOCAL_EPOCHS if local and not _deconvolved(noisy) else DEFAULT_EPOCHS
    return dataclasses.replace(options, epochs=epochs)


def _deconvolved(noisy: Any) -> bool:
    """Whether the stars' draws deconvolve measurement errors."""
    return bool(getattr(noisy, "has_errors", False))
