r"""What :func:`~gala_deeppotential.fit` returns: the potential, the DF, their record.

:class:`FitResult` holds the two fitted stages and the settings behind them;
it reports how the fit went, saves the potential with a record of the
catalogue's frame and units, and maps where the stars depart from
stationarity in the fitted potential.
"""

from __future__ import annotations

__all__ = ["UNCONVERGED_RESIDUAL", "FitResult", "fit_warnings", "output_paths"]

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gala.units import DimensionlessUnitSystem

from . import io
from .cbe import stationarity_terms
from .df import FlowEnsemble
from .gala_potential import DeepPotential
from .options import resolve_options
from .phasespace import to_phase_space
from .potential import PotentialFit
from .runtime import torch_threads
from .stationarity import StationarityMap, stationarity_map
from .training import DFOptions
from .uncertainty import GROUPS, PotentialBands, Resampling, potential_bands
from .virial import CONVERGED_SCALE, unconverged_message

#: A median relative stationarity residual (see :meth:`FitResult.report`)
#: above this means the fit has not converged.
UNCONVERGED_RESIDUAL = 0.5


@dataclass
class FitResult:
    r"""What :func:`fit` returns: the learned potential and how it was obtained.

    The whole pipeline's result. Its ``potential_fit`` is the Φ stage's own
    result, :class:`~gala_deeppotential.PotentialFit`, which
    :func:`~gala_deeppotential.fit_potential` returns when the stages are
    run one by one.

    Attributes
    ----------
    potential : :class:`~gala_deeppotential.DeepPotential`
        :math:`\Phi_\theta` in the unit system of the fit, Galactocentric.
    df : :class:`~gala_deeppotential.FlowEnsemble`
        The flow ensemble fitted to the stars, in the same units.
    potential_fit : :class:`~gala_deeppotential.PotentialFit`
        The network fit behind ``potential``, calibrated if the calibration
        was applied (its ``virial`` says).
    phase_space : dict
        JSON-able record of the input: ``units`` (unit strings, or None for
        dimensionless), ``frame`` (the Galactocentric frame as
        :func:`~gala_deeppotential.phasespace.galcen_frame_to_dict` writes
        it, or None), ``n_stars`` and ``n_dropped``.
    config : dict
        JSON-able settings: ``df_options``, ``potential_options``, ``virial``
        (the calibration's options, or None when it was turned off) and
        ``seed``.
    selection : :class:`~gala_deeppotential.selection.BoundSelection`, optional
        The selection function on the stars, if the fit had one (not saved).
    data : :class:`~gala_deeppotential.phasespace.PhaseSpaceData`, optional
        The stars as they were fitted (not saved), for :meth:`bands`.
    """

    potential: DeepPotential
    df: FlowEnsemble
    potential_fit: PotentialFit
    phase_space: dict[str, Any]
    config: dict[str, Any]
    selection: Any = field(default=None, repr=False)
    data: Any = field(default=None, repr=False)

    @property
    def history(self) -> dict[str, dict[str, list]]:
        """Training curves: ``"df"`` (per epoch) and ``"potential"`` (per check)."""
        return {"df": self.df.history, "potential": self.potential_fit.history}

    def _rotation(self) -> dict[str, float] | None:
        scaler = self.df.standardizer
        if scaler is None or scaler.rotation_speed == 0:
            return None
        return {"v0": scaler.rotation_speed, "R0": scaler.rotation_radius}

    @property
    def _truncated_likelihood(self) -> bool:
        """Whether the flows were fitted to the truncated likelihood of a
        selection function, and so model the DF itself."""
        return "selection" in self.config and bool(
            self.config["df_options"].get("truncated")
        )

    def _survey(self) -> dict[str, Any]:
        """Which stars informed what, the selection, the deconvolution."""
        n_stars = self.phase_space["n_stars"]
        deconvolved = "deconvolution" in self.config
        scaler = self.df.standardizer
        return {
            "stars_for_positions": n_stars,
            "stars_for_velocities": self.phase_space.get("n_with_rv", n_stars),
            "stars_for_tangential_velocities": self.config.get(
                "missing_radial_velocities", {}
            ).get("stars", 0),
            "selection": self.config.get("selection"),
            "truncated_likelihood": self._truncated_likelihood,
            "ball_map": scaler is not None and scaler.ball_map is not None,
            "deconvolution": (
                {
                    name: self.config["df_options"][name]
                    for name in ("error_samples", "error_epochs")
                }
                if deconvolved
                else None
            ),
        }

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
            :math:`-\langle\ln f\rangle` in the fit's units, ``wall_s``,
            and ``rotation``: the rotation curve the flows' standardizer
            subtracted from a rotating catalogue, ``v0`` [speed unit] and
            ``R0`` [length unit], or None);
            ``potential`` (``steps``, first and best ``val_loss``,
            ``restarts``, ``wall_s``, ``data_radius`` [length unit],
            ``network``: the Φ network's architecture and inputs,
            ``pattern_speed`` [1 / time unit]: :math:`\Omega_p`, given,
            measured or fitted, or None for a static potential;
            ``pattern_speed_measurement``: how it was measured from the stars,
            with its ``uncertainty`` (see
            :func:`~gala_deeppotential.continuity.continuity_pattern_speed`),
            or None);
            ``virial`` (the calibration's record, see
            :func:`~gala_deeppotential.virial.calibrate`; empty when it was
            turned off); ``survey`` (``stars_for_positions`` and
            ``stars_for_velocities``, the numbers of stars behind the
            density of positions and the velocity distribution,
            ``stars_for_tangential_velocities``, those without a radial
            velocity whose tangential velocities informed it;
            ``selection``, the selection function's summary, or None;
            ``truncated_likelihood``, whether the flows modelled the DF
            across the selection's edges; ``ball_map``, whether they saw
            the positions through the ball of its distance limit mapped onto
            all of space (:class:`~gala_deeppotential.ball_map.BallMap`);
            ``deconvolution``,
            ``error_samples`` and ``error_epochs`` if the measurement errors
            were deconvolved, else None);
            ``stationarity`` (``n_points`` and the median and 90th
            percentile of :math:`\epsilon`);
            ``negative_density_fraction``; and ``warnings``, sentences on
            what looks wrong (a declined calibration, an unconverged fit)
            and what to change.
        """
        seed = self.config["seed"] + 1 if seed is None else seed
        stationarity, negative = self._stationarity(n_points, seed, threads)
        df_hist, phi_hist = self.df.history, self.potential_fit.history
        if plot is not None:
            from .compare import plot_training

            plot_training(df_hist, phi_hist).savefig(Path(plot), dpi=100)
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
                "rotation": self._rotation(),
            },
            "potential": {
                "steps": phi_hist["step"][-1],
                "val_loss_first": phi_hist["val_loss"][0],
                "val_loss": min(phi_hist["val_loss"]),
                "restarts": len(phi_hist["restarts"]),
                "wall_s": self.potential_fit.wall_s,
                "data_radius": self.potential_fit.data_radius,
                "network": dict(self.potential_fit.net.config),
                "pattern_speed": self.potential_fit.net.pattern_speed,
                "pattern_speed_measurement": self.config.get(
                    "pattern_speed_measurement"
                ),
            },
            "virial": self.potential_fit.virial,
            "survey": self._survey(),
            "stationarity": stationarity,
            "negative_density_fraction": negative,
            "warnings": fit_warnings(self.potential_fit.virial, stationarity),
        }

    def _stationarity(
        self, n_points: int, seed: int, threads: int | None
    ) -> tuple[dict[str, Any], float]:
        """The relative residual at fresh DF samples, and the negative-ρ fraction."""
        with torch_threads(threads):
            x, v = self.df.sample(n_points, seed=seed)
            grad_x, grad_v = self.df.grad_log_prob(x, v)
            x, v, grad_x, grad_v = (
                t.detach().cpu().double() for t in (x, v, grad_x, grad_v)
            )
            net64 = copy.deepcopy(self.potential_fit.net).double()
            with torch.no_grad():
                _, grad_phi, lap = net64.grad_and_laplacian(x)
        residual, size = stationarity_terms(
            v, grad_phi, grad_x, grad_v, x=x, pattern_speed=net64.pattern_speed
        )
        relative = (residual.abs() / size).numpy()
        summary = {
            "n_points": int(n_points),
            "median_relative_residual": float(np.median(relative)),
            "p90_relative_residual": float(np.quantile(relative, 0.9)),
        }
        return summary, float((lap < 0).double().mean())

    def stationarity(
        self,
        catalogue: Any,
        *,
        columns: Mapping[str, str] | None = None,
        drop_invalid: bool = False,
        threads: int | None = None,
    ) -> StationarityMap:
        r"""Where the stars depart from stationarity in the fitted potential.

        Evaluates :math:`\partial \ln f/\partial t` from the Boltzmann
        equation at each star with full 6D coordinates, with the ensemble's
        and each flow member's DF, and the fitted :math:`\nabla\Phi` (and
        pattern speed); see :mod:`gala_deeppotential.stationarity` for its
        meaning and noise. For a fit through a selection function whose
        flows model the observed :math:`f S` (the default), stars near the
        selection's edges carry its gradient too.

        Parameters
        ----------
        catalogue
            The stars, as :func:`~gala_deeppotential.fit` reads them (usually
            the catalogue that was fitted); they are put in the fit's
            Galactocentric frame and units.
        columns, drop_invalid
            As for :func:`~gala_deeppotential.fit`.
        threads : int, optional
            torch intra-op threads.

        Returns
        -------
        map : :class:`~gala_deeppotential.stationarity.StationarityMap`
            ``.summary()`` names the regions that depart significantly;
            ``.plot()`` draws them.
        """
        units = io.units_from_json(self.phase_space["units"])
        data = to_phase_space(
            catalogue,
            galcen_frame=self.phase_space["frame"],
            units=DimensionlessUnitSystem() if units is None else units,
            columns=columns,
            drop_invalid=drop_invalid,
        )
        keep = np.ones(len(data), bool) if data.has_rv is None else data.has_rv
        x, v = data.x[keep], data.v[keep]
        net = copy.deepcopy(self.potential_fit.net).double()
        with torch_threads(threads):
            grad_phi = net.value_and_grad(torch.from_numpy(x))[1].numpy()
            return stationarity_map(
                self.df,
                x,
                v,
                grad_phi,
                pattern_speed=net.pattern_speed,
                units=None
                if units is None
                else {"length": str(units["length"]), "time": str(units["time"])},
            )

    def bands(
        self,
        groups: int = GROUPS,
        *,
        resample: str = "members",
        seed: int | None = None,
        device: Any = "cpu",
        threads: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> PotentialBands:
        r"""Error bars on :math:`\Phi`, the acceleration, the density and :math:`v_c`.

        Fits :math:`\Phi` again to each of ``groups`` disjoint groups of the
        flow members, with this fit's settings, scales each by this fit's
        virial scale, and gives bands about this fit from their spread (see
        :mod:`gala_deeppotential.uncertainty` for the method and its
        calibration). It costs ``groups`` more Φ fits.

        Parameters
        ----------
        groups : int
            Number of groups, 2 to the number of flow members.
        resample : {"members", "stars"}
            ``"members"``: the groups are of this fit's flow members (G
            more Φ fits). ``"stars"``: each group's flows are trained afresh
            on a bootstrap resample of the stars, which puts the stars'
            sampling noise in the bands too (the flows' training once more,
            as well).
        seed : int, optional
            Seed of the group fits (group g gets ``seed + 1 + g``); by
            default the fit's.
        device, threads, progress
            As for :func:`~gala_deeppotential.fit`.
        checkpoint_dir : str or path-like, optional
            Folder that keeps the group fits, so a second call returns at once.

        Returns
        -------
        bands : :class:`~gala_deeppotential.uncertainty.PotentialBands`
            ``bands.acceleration(q)`` and the like return a
            :class:`~gala_deeppotential.uncertainty.Band`;
            ``bands.potentials`` holds the group fits for orbit spreads.

        Examples
        --------
        With ``result`` from :func:`~gala_deeppotential.fit`::

            bands = result.bands()
            a = bands.acceleration([8.0, 0, 0] * u.kpc)
            a.value, a.sigma  # the fit and the half-width of its 68% band
        """
        return potential_bands(
            self.df,
            self.potential_fit,
            self.potential.units,
            groups=groups,
            seed=self.config["seed"] if seed is None else seed,
            stars=self._resampling(resample),
            selection=self.selection,
            intrinsic_df=self._truncated_likelihood,
            device=device,
            threads=threads,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
        )

    def _resampling(self, resample: str) -> Resampling | None:
        """How :meth:`bands` resamples the stars, or None for groups of members."""
        if resample == "members":
            return None
        if resample != "stars":
            raise ValueError(f"resample must be 'members' or 'stars', got {resample!r}")
        if self.data is None:
            raise ValueError(
                "resample='stars' needs the stars, which this FitResult does not "
                "hold (only the one fit() returns does); use resample='members'"
            )
        return Resampling(
            data=self.data,
            df_options=resolve_options(DFOptions, self.config["df_options"]),
            deconvolve="deconvolution" in self.config,
            completeness=None
            if self.selection is None
            else self.selection.completeness,
        )

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
        paths = output_paths(path)
        self.potential.save(paths["yaml"], paths["model"])
        record = {
            "phase_space": self.phase_space,
            "config": self.config,
            "report": None if report is None else dict(report),
        }
        paths["record"].write_text(json.dumps(record, indent=2), encoding="utf-8")
        return paths


def fit_warnings(virial: Mapping[str, Any], stationarity: Mapping[str, Any]) -> list:
    """Sentences on what the calibration and the residual say is wrong, if anything."""
    out = []
    if virial and not virial.get("applied"):
        out.append(f"virial calibration not applied: {virial['reason']}")
    elif virial and abs(virial["scale"] - 1) > CONVERGED_SCALE:
        out.append(unconverged_message(virial))
    residual = stationarity["median_relative_residual"]
    if residual > UNCONVERGED_RESIDUAL:
        out.append(
            f"the fitted DF is far from stationary in the fitted potential "
            f"(median relative residual {residual:.2f} > {UNCONVERGED_RESIDUAL}): "
            "the fit has not converged; train longer (more flow epochs and Φ "
            "steps) or give more stars"
        )
    return out


def output_paths(path: str | os.PathLike) -> dict[str, Path]:
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
