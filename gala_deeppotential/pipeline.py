r"""The whole method in one call: a stellar catalogue in, a gala potential out.

:func:`fit` runs the stages in order,
:func:`~gala_deeppotential.phasespace.to_phase_space`,
:func:`~gala_deeppotential.training.fit_distribution_function`,
:func:`~gala_deeppotential.potential.fit_potential` and
:func:`~gala_deeppotential.virial.calibrate`, and owns the checkpoints; it is
the only module that knows every stage.
"""

from __future__ import annotations

__all__ = ["FitResult", "PotentialStageError", "fit", "output_paths"]

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import torch
from gala.units import DimensionlessUnitSystem, UnitSystem, galactic

from . import io
from .continuity import continuity_pattern_speed
from .deconvolution import NoisyAstrometry, star_draws
from .df import MIN_STARS, FlowEnsemble
from .gala_potential import DeepPotential
from .options import options_dict, resolve_options
from .phasespace import CatalogueError, PhaseSpaceData, to_phase_space
from .potential import PotentialFit, PotentialOptions, fit_potential
from .radial_map import local_center
from .result import FitResult, output_paths
from .runtime import torch_threads
from .selection import BoundSelection, as_selection
from .sightlines import MissingRadialVelocities
from .training import fit_distribution_function
from .training_options import DFOptions, epochs_for, truncation_for
from .virial import (
    VirialOptions,
    VirialWarning,
    calibrate,
)

# Files in a pipeline checkpoint folder.
_MANIFEST_FILE = "manifest.json"
_DF_FOLDER = "df"
_POTENTIAL_FILE = "potential_fit.pt"


def fit(
    catalogue: Any,
    *,
    units: UnitSystem = galactic,
    galcen_frame: Any = None,
    columns: Mapping[str, str] | None = None,
    drop_invalid: bool = False,
    df_options: DFOptions | Mapping[str, Any] | None = None,
    potential_options: PotentialOptions | Mapping[str, Any] | None = None,
    virial: bool | VirialOptions | Mapping[str, Any] = True,
    selection: Any = None,
    errors: bool | None = None,
    pattern_speed: Any = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    threads: int | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    distributed: bool = False,
) -> FitResult:
    r"""Fit a potential to a stellar catalogue: the whole method in one call.

    The stages are
    :func:`~gala_deeppotential.phasespace.to_phase_space` (the catalogue to
    Galactocentric Cartesian positions and velocities in ``units``),
    :func:`~gala_deeppotential.fit_distribution_function` (the flow
    ensemble, the DF), :func:`~gala_deeppotential.fit_potential` (the
    :math:`\Phi_\theta` that makes the DF stationary),
    :func:`~gala_deeppotential.virial.calibrate` (the overall strength of
    its forces, from the stars' virial theorem) and
    :meth:`~gala_deeppotential.DeepPotential.from_fit`.

    Parameters
    ----------
    catalogue : SkyCoord, PhaseSpacePosition, (pos, vel), Table or path
        Anything :func:`~gala_deeppotential.phasespace.to_phase_space`
        reads: e.g. an ICRS :class:`~astropy.coordinates.SkyCoord` with
        distances, proper motions and radial velocities, or an ECSV file.
        Stars whose radial velocity is NaN or masked are kept: every star
        informs the density of positions, those with radial velocities the
        velocity distribution at each position, and those without it the
        distribution of their tangential velocities, with the radial one
        integrated out by ``rv_samples`` Monte Carlo draws per star (a field
        of ``df_options``; see :mod:`gala_deeppotential.sightlines`). The
        flows then factorize as :math:`p(x)\,p(v \mid x)`
        (``factorization="conditional"``, set automatically). This assumes
        that whether a star has a radial velocity does not depend on its
        velocity.
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
    df_options : :class:`~.training_options.DFOptions` or dict, optional
        The flows' architecture and training (``n_flows``, ``epochs``,
        ``time_limit``, ...); the defaults are the measured ones.
    potential_options : :class:`~.potential.PotentialOptions` or dict, optional
        The Φ fit's settings (``n_samples``, ``n_steps``, ...).
    virial : bool, :class:`~gala_deeppotential.virial.VirialOptions` or dict
        Calibrate the forces with the stars' virial theorem (``True``, with
        the window about the stars' median position), with the given
        ``center``, ``radius`` (plain numbers in ``units``, or Quantities)
        and ``window``, or not at all (``False``). The calibration checks
        that its assumptions hold and otherwise declines with a
        :class:`~gala_deeppotential.virial.VirialWarning`; the fit's report
        says so too. It is skipped, with the reason in the report, for a
        ``selection``, and for a local volume (stars that do not surround
        the Galactic centre, where the theorem sees only the tidal field)
        unless a window ``center`` is given.
    selection : SelectionFunction or callable, optional
        The survey's selection function :math:`S`: a
        :class:`~gala_deeppotential.selection.SkySelection` (a HEALPix
        footprint, a distance limit, a completeness in distance) or a
        function of an ICRS :class:`~astropy.coordinates.SkyCoord` that
        returns :math:`S \in [0, 1]` per star. Φ is then fitted inside it,
        away from its edges, to the DF corrected for it (see
        :mod:`gala_deeppotential.selection`). A volume-complete sample (every
        star within a distance, say) needs no selection function unless its
        edge should be kept away from: the flows learn the edge as part of
        the DF, and the Φ fit would see it; pass
        ``SkySelection(distance_limit=...)`` to fit inside it.
    errors : bool, optional
        Deconvolve the measurement errors of a table's ``_error`` columns
        (parallax, proper motions, radial velocity): the flows are trained
        on the error-convolved likelihood (see
        :mod:`gala_deeppotential.deconvolution`), ``error_samples`` Monte
        Carlo draws per star (a field of ``df_options``), which makes
        training that many times slower per step (over the last
        ``error_epochs`` epochs only, if that field is set). By default,
        whenever the catalogue has error columns; ``False`` treats the
        measurements as exact; ``True`` insists, and refuses a catalogue
        without them.
    pattern_speed : :class:`~astropy.units.Quantity` [frequency] or str, optional
        For a system that is stationary in a frame rotating about the
        Galactocentric z axis (a bar): its pattern speed :math:`\Omega_p`
        (e.g. ``40 * u.km / u.s / u.kpc``; positive is counterclockwise seen
        from the north Galactic pole, so the Milky Way's bar, which turns
        with the disc, has a negative one in astropy's Galactocentric
        frame), or how to find it: ``"continuity"`` measures it from the
        stars' continuity equation before Φ is fitted in that frame
        (:func:`~gala_deeppotential.continuity.continuity_pattern_speed`;
        the whole system, no selection function, errors or missing radial
        velocities), ``"joint"`` fits it together with :math:`\Phi` (see
        :func:`~gala_deeppotential.fit_potential`), and ``"fit"`` does the
        first where the catalogue allows and the second otherwise. The
        potential then carries it (:attr:`DeepPotential.pattern_speed
        <gala_deeppotential.DeepPotential.pattern_speed>`), and the report
        gives it, with the measurement's uncertainty. ``None`` (default): a
        static potential.
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
        epoch, and the finished Φ fit is stored before it is calibrated, so
        calling :func:`fit` again with the same folder after a crash or kill
        resumes where the run stopped, and a finished run returns at once
        (with any ``virial`` setting); on the CPU with the same ``threads``
        the result is bit-identical to an uninterrupted run. The folder's
        ``manifest.json`` holds a SHA-256 of the phase-space data and of the
        settings of the two fits: a folder of a different fit is never
        reused, but raises instead.
    distributed : bool
        Spread the flow ensemble's members over the processes of
        ``torchrun`` (see :mod:`gala_deeppotential.distributed`; ``gloo`` on
        the CPU, ``nccl`` and ``cuda:LOCAL_RANK`` for ``device="cuda"``).
        Call it on every rank with the same arguments; the ensemble equals a
        single process's, rank 0 fits Φ, and every rank returns the same
        result.

    Returns
    -------
    result : :class:`FitResult`

    Raises
    ------
    ~gala_deeppotential.phasespace.CatalogueError
        For a catalogue that cannot become phase space (the message says
        why), or a selection function that is zero at some stars.
    TypeError
        For an option that is not a setting of its stage.
    ValueError
        For bad option values, or a ``checkpoint_dir`` that holds another
        fit or other files.
    PotentialStageError
        If the Φ fit collapses or diverges at every restart; it holds the
        trained flows as ``.df``.

    Examples
    --------
    A Plummer sphere at the Galactic centre, seen from the Sun (tiny sizes
    for speed; see ``examples/skycoord_catalog.py`` for a real fit):

    >>> import warnings
    >>> import astropy.units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from gala_deeppotential.mocks import plummer_sample
    >>> from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME
    >>> w = plummer_sample(1000, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=1)
    >>> stars = SkyCoord(w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # so short a fit is far from converged
    ...     result = fit(
    ...         stars.icrs,
    ...         df_options={"n_flows": 1, "epochs": 1},
    ...         potential_options={"n_samples": 512, "n_steps": 20},
    ...         progress=False,
    ...     )
    >>> result.potential.units["length"]
    Unit("kpc")
    """
    df_options = resolve_options(DFOptions, df_options)
    potential_options = resolve_options(PotentialOptions, potential_options)
    virial_options = _virial_options(virial, units)
    data = to_phase_space(
        catalogue,
        galcen_frame=galcen_frame,
        units=units,
        columns=columns,
        drop_invalid=drop_invalid,
        min_stars=MIN_STARS,
    )
    phase_space = _phase_space_record(data)
    draws = _star_draws(data, errors, df_options.rv_samples)
    bound = _bind_selection(selection, data, exact=not (draws and draws.has_errors))
    df_options = _df_options_for(df_options, data, draws, bound)
    omega, rotation = _resolve_pattern_speed(pattern_speed, units, data, bound, draws)
    stages = _stages(df_options, potential_options, seed, bound, draws, rotation)
    truncated = bound is not None and df_options.truncated
    run = {"seed": seed, "threads": threads, "progress": progress}
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    if distributed:
        df, potential_fit = _fit_distributed(
            data,
            df_options,
            potential_options,
            folder,
            device,
            run,
            phase_space,
            stages,
            bound,
            draws,
            omega,
        )
    else:
        if folder is not None:
            _open_checkpoint(folder, data.w, phase_space, stages)
        df = fit_distribution_function(
            data.w,
            df_options,
            device=device,
            checkpoint_dir=_df_folder(folder),
            noisy=draws,
            **_flow_selection(bound),
            **run,
        )
        potential_fit = _potential_stage(
            df, potential_options, folder, device, run, bound, truncated, omega
        )
    if virial_options is not None:
        potential_fit = _calibrated(potential_fit, data, virial_options, bound, threads)
    return FitResult(
        potential=DeepPotential.from_fit(potential_fit, units=units),
        df=df,
        potential_fit=potential_fit,
        phase_space=phase_space,
        config={**stages, "virial": virial_options and options_dict(virial_options)},
        selection=bound,
        data=data,
    )


def _df_options_for(
    options: DFOptions,
    data: PhaseSpaceData,
    draws: NoisyAstrometry | MissingRadialVelocities | None,
    bound: BoundSelection | None,
) -> DFOptions:
    """The flows' options for these stars: conditional when radial velocities
    lack; the truncated likelihood and the epochs decided (see
    :func:`~gala_deeppotential.training_options.truncation_for` and
    :func:`~gala_deeppotential.training_options.epochs_for`)."""
    options = epochs_for(truncation_for(options, draws, bound), data.x, draws)
    if data.has_rv is not None and options.factorization == "joint":
        return dataclasses.replace(options, factorization="conditional")
    return options


def _phase_space_record(data: PhaseSpaceData) -> dict[str, Any]:
    return {
        "units": io.units_to_json(data.units),
        "frame": data.frame,
        "n_stars": len(data),
        "n_dropped": data.n_dropped,
        "n_with_rv": data.n_rv,
        "errors_in_catalogue": data.astrometry is not None,
    }


def _virial_options(
    virial: bool | VirialOptions | Mapping[str, Any], units: UnitSystem
) -> VirialOptions | None:
    """The calibration's options in ``units`` (None: turned off)."""
    if virial is False or virial is None:
        return None
    if virial is True:
        return VirialOptions()
    return resolve_options(VirialOptions, _plain_lengths(virial, units))


def _plain_lengths(virial: Any, units: UnitSystem) -> Any:
    """``center`` and ``radius`` given as Quantities, as numbers in ``units``."""
    if not isinstance(virial, Mapping):
        return virial
    out = dict(virial)
    for name in ("center", "radius"):
        value = out.get(name)
        if isinstance(value, u.Quantity):
            out[name] = value.to_value(units["length"])
    return out


def _df_folder(folder: Path | None) -> Path | None:
    return None if folder is None else folder / _DF_FOLDER


def _stages(
    df_options: DFOptions,
    potential_options: PotentialOptions,
    seed: int,
    bound: BoundSelection | None,
    draws: NoisyAstrometry | MissingRadialVelocities | None,
    rotation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-able settings of the two fits, as the checkpoints record them."""
    stages = {
        "df_options": options_dict(df_options),
        "potential_options": options_dict(potential_options),
        "seed": seed,
        **(rotation or {}),
    }
    if bound is not None:
        stages["selection"] = bound.describe()
    if draws is not None and draws.has_errors:
        stages["deconvolution"] = {"astrometry_sha256": draws.sha256}
    if draws is not None and draws.marginalizes_rv:
        missing = len(draws) - int(draws.has_rv.sum())
        stages["missing_radial_velocities"] = {"stars": missing}
    return stages


#: The words ``pattern_speed`` takes, besides a number.
PATTERN_SPEED_METHODS = ("fit", "continuity", "joint")


def _plain_pattern_speed(pattern_speed: Any, units: UnitSystem) -> float | str | None:
    """A pattern speed as a number in ``units`` (or one of
    :data:`PATTERN_SPEED_METHODS`, or None)."""
    if isinstance(pattern_speed, str) and pattern_speed not in PATTERN_SPEED_METHODS:
        raise ValueError(
            f"pattern_speed must be a Quantity or one of {PATTERN_SPEED_METHODS}, "
            f"got {pattern_speed!r}"
        )
    if pattern_speed is None or isinstance(pattern_speed, str):
        return pattern_speed
    if not isinstance(pattern_speed, u.Quantity):
        if not isinstance(units, DimensionlessUnitSystem):
            raise ValueError(
                "pattern_speed must be a Quantity with units of frequency, e.g. "
                f"40 * u.km / u.s / u.kpc, or 'fit'; got {pattern_speed!r}"
            )
        return float(pattern_speed)
    try:
        return float(pattern_speed.to_value(1 / units["time"]))
    except u.UnitConversionError:
        raise ValueError(
            "pattern_speed must have units of frequency (e.g. km / s / kpc), "
            f"got {pattern_speed.unit}"
        ) from None


def _resolve_pattern_speed(
    pattern_speed: Any,
    units: UnitSystem,
    data: PhaseSpaceData,
    bound: BoundSelection | None,
    draws: NoisyAstrometry | MissingRadialVelocities | None,
) -> tuple[float | str | None, dict[str, Any]]:
    """What the Φ fit takes for ``pattern_speed``, and how the record names it.

    ``"continuity"`` measures Ω_p from the stars
    (:func:`~gala_deeppotential.continuity.continuity_pattern_speed`) and the
    Φ fit keeps it; ``"joint"`` becomes the Φ fit's ``"fit"``, Ω_p fitted
    with Φ; ``"fit"`` is the first where the catalogue allows it (the whole
    system, every star with exact positions and velocities), else the second.
    The record calls the joint fit ``"joint"``, as the caller does, and keeps
    a measurement with its uncertainty.
    """
    omega = _plain_pattern_speed(pattern_speed, units)
    if not isinstance(omega, str):
        return omega, {} if omega is None else {"pattern_speed": omega}
    complete = bound is None and draws is None
    if omega == "joint" or (omega == "fit" and not complete):
        return "fit", {"pattern_speed": "joint"}
    if not complete:
        raise ValueError(
            "pattern_speed='continuity' measures Omega_p from every star's "
            "exact position and velocity over the whole system, but this "
            "catalogue has a selection function, measurement errors or missing "
            "radial velocities: use pattern_speed='joint' (fitted with the "
            "potential) or give it as a Quantity"
        )
    measurement = continuity_pattern_speed(data.x, data.v)
    return measurement.value, {
        "pattern_speed": measurement.value,
        "pattern_speed_measurement": measurement.to_dict(),
    }


def _bind_selection(
    selection: Any, data: PhaseSpaceData, exact: bool
) -> BoundSelection | None:
    """The selection function on the fit's Galactocentric positions, or None."""
    selection = as_selection(selection)
    if selection is None:
        return None
    if data.frame is None:
        raise ValueError(
            "a selection function needs sky positions: fit a catalogue in a "
            "physical unit system, not a dimensionless one"
        )
    return selection.bind(data.frame, data.units["length"], data.x, exact)


def _flow_selection(bound: BoundSelection | None) -> dict[str, Any]:
    """What the flows' training takes of a selection: S, and its distance
    limit's ball."""
    if bound is None:
        return {"selection": None, "ball": None}
    return {"selection": bound.completeness, "ball": bound.ball()}


def _star_draws(
    data: PhaseSpaceData, errors: bool | None, rv_samples: int
) -> NoisyAstrometry | MissingRadialVelocities | None:
    """The measurements to deconvolve, else the missing radial velocities to
    integrate out, else None."""
    if errors and data.astrometry is None:
        raise CatalogueError(
            "errors=True, but the catalogue has no error columns: "
            "deconvolution needs a table (or file) with parallax_error, "
            "pmra_error, pmdec_error and radial_velocity_error (rename "
            "yours with columns=), or pass errors=None to fit without"
        )
    deconvolve = errors is not False and data.astrometry is not None
    return star_draws(data, deconvolve, rv_samples)


def _calibrated(
    potential_fit: PotentialFit,
    data: PhaseSpaceData,
    options: VirialOptions,
    bound: BoundSelection | None,
    threads: int | None,
) -> PotentialFit:
    """The fit calibrated by the virial theorem, or why that was skipped."""
    reason = None
    if bound is not None:
        reason = (
            "the catalogue has a selection function, and the virial theorem "
            "needs every star in its window"
        )
    elif options.center is None and local_center(data.x) is not None:
        reason = (
            "the stars are a local volume that does not surround the centre of "
            "the system, where the virial theorem sees only the tidal field"
        )
    if reason is not None:
        warnings.warn(
            f"virial calibration not applied: {reason}", VirialWarning, stacklevel=3
        )
        return dataclasses.replace(
            potential_fit, virial={"applied": False, "reason": reason}
        )
    with torch_threads(threads):
        return calibrate(potential_fit, data.x, data.v, options)


class PotentialStageError(RuntimeError):
    """The Φ fit failed after the flows were trained; the flows are kept.

    Attributes
    ----------
    df : :class:`~gala_deeppotential.FlowEnsemble`
        The trained flows: fit Φ to them again with
        :func:`~gala_deeppotential.fit_potential` and other options, without
        training them anew.
    """

    def __init__(self, message: str, df: FlowEnsemble) -> None:
        super().__init__(message)
        self.df = df


def _potential_stage(
    df: FlowEnsemble,
    options: PotentialOptions,
    folder: Path | None,
    device: Any,
    run: dict[str, Any],
    bound: BoundSelection | None,
    truncated: bool,
    pattern_speed: float | str | None,
) -> PotentialFit:
    """The Φ fit, read from the checkpoint folder or fitted and stored there."""
    path = None if folder is None else folder / _POTENTIAL_FILE
    if path is not None and path.is_file():
        return PotentialFit.load(path)
    try:
        potential_fit = fit_potential(
            df,
            options,
            device=device,
            selection=bound,
            intrinsic_df=truncated,
            pattern_speed=pattern_speed,
            **run,
        )
    except RuntimeError as error:
        raise PotentialStageError(
            f"{error}. The trained flows are kept as this error's .df: fit Φ to "
            "them with gala_deeppotential.fit_potential(error.df, ...) and other "
            "options (for example a lower lr), without training them again",
            df,
        ) from error
    if path is not None:
        potential_fit.save(path)
    return potential_fit


def _fit_distributed(
    data: PhaseSpaceData,
    df_options: DFOptions,
    potential_options: PotentialOptions,
    folder: Path | None,
    device: Any,
    run: dict[str, Any],
    phase_space: dict[str, Any],
    stages: dict[str, Any],
    bound: BoundSelection | None,
    draws: NoisyAstrometry | MissingRadialVelocities | None,
    pattern_speed: float | str | None,
) -> tuple[FlowEnsemble, PotentialFit]:
    """Both fits over torchrun's ranks: the flows shared out, Φ on rank 0."""
    from . import distributed as multi

    truncated = bound is not None and df_options.truncated
    with multi.process_group(device) as rank_device:
        root = torch.distributed.get_rank() == 0
        if folder is not None:
            # Rank 0 claims the folder; the others then check its manifest.
            for claims in (root, not root):
                if claims:
                    _open_checkpoint(folder, data.w, phase_space, stages)
                torch.distributed.barrier()
        df = multi.fit_distribution_function(
            data.w,
            df_options,
            device=rank_device,
            checkpoint_dir=_df_folder(folder),
            noisy=draws,
            **_flow_selection(bound),
            **run,
        )
        potential_fit = None
        if root:
            potential_fit = _potential_stage(
                df,
                potential_options,
                folder,
                rank_device,
                run,
                bound,
                truncated,
                pattern_speed,
            )
        return df, multi.broadcast_potential_fit(potential_fit)


def _open_checkpoint(
    folder: Path, w: np.ndarray, phase_space: dict, stages: dict
) -> Path:
    """Claim ``folder`` for this fit, or check that it already holds this fit."""
    digest = hashlib.sha256(np.ascontiguousarray(w, dtype=np.float64).tobytes())
    settings = {"phase_space": phase_space, "config": stages}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return io.claim_folder(
        folder,
        {"sha256": digest.hexdigest(), **settings},
        name=_MANIFEST_FILE,
        kind="fit checkpoint",
        other="a checkpoint of a different fit (other stars or settings)",
    )
