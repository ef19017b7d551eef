r"""Error bars on a fitted potential, from disjoint groups of flow members.

The flow ensemble holds K independent models of the DF. Splitting it into
G disjoint groups and fitting :math:`\Phi` to each group's DF, with the main
fit's settings and a seed of its own, gives G potentials that differ as much
as the flows' independent errors and the Φ fit's own noise make them differ.
The main fit averages over G times as many members as a group fit, so the
band about it is

.. math::

    \Phi \pm k\,t_{G-1}\,\frac{\sigma_G}{\sqrt{G}}, \qquad
    \sigma_G^2 = \frac{1}{G - 1}\sum_{g=1}^{G} (\Phi_g - \bar\Phi)^2,

and likewise for the acceleration, the density and the circular velocity.
:math:`t_{G-1}` is the 84th percentile of Student's t distribution with
G - 1 degrees of freedom (1.20 for G = 4): :math:`\sigma_G` comes from a
few fits. Each group fit has its forces multiplied by the main fit's virial
scale (the stars' calibration of their overall strength), and that scale's
own relative error, which every fit shares, is added in quadrature.

With :math:`k = 1` (:data:`BAND_SCALE`) the band holds 68% of the truths
where the flows' independent errors dominate the main fit's: on a 2^17-star
Plummer sphere, everywhere outside its core (``benchmarks/uncertainty.py``;
the measurements are in the docs' benchmark page). It does not hold what
every member shares, which the groups cannot see: the sampling noise of the
stars themselves, which dominates for small catalogues, and the method's
bias, such as the forces that come out low in a Plummer sphere's core. It
costs G more Φ fits.
"""

from __future__ import annotations

__all__ = [
    "BAND_SCALE",
    "GROUPS",
    "Band",
    "PotentialBands",
    "Resampling",
    "member_groups",
    "potential_bands",
    "student_t_factor",
]

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from gala.units import UnitSystem
from scipy import stats

from . import io
from .deconvolution import star_draws
from .df import FlowEnsemble
from .gala_potential import DeepPotential
from .phasespace import PhaseSpaceData
from .potential import PotentialFit, fit_potential
from .training import DFOptions, fit_distribution_function
from .virial import apply_scale

#: Default number of member groups G.
GROUPS = 4
#: The band's half-width in units of the groups' standard deviation, k.
BAND_SCALE = 1.0

# Probability inside one standard deviation of a normal distribution.
_ONE_SIGMA = 0.6826894921370859
_MANIFEST_FILE = "bands.json"
_SAVED_FILE = "saved_bands.json"
# Settings in a PotentialFit's config that are not PotentialOptions fields.
_NOT_OPTIONS = ("seed", "pattern_speed")


@dataclass(frozen=True)
class Band:
    r"""A quantity of the main fit with its 68% band.

    Attributes
    ----------
    value : :class:`~astropy.units.Quantity`
        The main fit's value.
    members : :class:`~astropy.units.Quantity`
        The group fits' values, stacked along a new first axis of length G.
    scale : float
        The band's half-width in units of the members' standard deviation
        (:data:`BAND_SCALE` times :func:`student_t_factor` over
        :math:`\sqrt{G}`).
    common : float
        A relative error that every member shares, added in quadrature: the
        virial calibration's, which multiplies the main fit and every group
        fit alike.
    """

    value: u.Quantity
    members: u.Quantity
    scale: float
    common: float = 0.0

    @cached_property
    def sigma(self) -> u.Quantity:
        """Half-width of the band (computed once).

        ``scale`` times the members' standard deviation, and ``common``
        times the value, in quadrature.
        """
        spread = self.scale * np.std(self.members, axis=0, ddof=1)
        return np.hypot(spread, self.common * np.abs(self.value))

    @property
    def low(self) -> u.Quantity:
        """Lower edge, ``value - sigma``."""
        return self.value - self.sigma

    @property
    def high(self) -> u.Quantity:
        """Upper edge, ``value + sigma``."""
        return self.value + self.sigma

    def contains(self, truth: u.Quantity) -> np.ndarray:
        """Whether each element of ``truth`` lies inside the band (bool array)."""
        return np.asarray(np.abs(truth - self.value) <= self.sigma)

    def norm(self) -> Band:
        """The band of the vector's length, for a vector along the first axis.

        E.g. of :math:`|\\vec a|` from :meth:`PotentialBands.acceleration`.
        """
        return Band(
            value=np.linalg.norm(self.value, axis=0),
            members=np.linalg.norm(self.members, axis=1),
            scale=self.scale,
            common=self.common,
        )


@dataclass
class PotentialBands:
    r"""A fitted potential with the fits that give its error bars.

    Each method takes positions as gala's do: a
    :class:`~astropy.units.Quantity` [length] of shape ``(3,)`` or
    ``(3, N)``, or plain numbers in the potential's units.

    Attributes
    ----------
    potential : :class:`~gala_deeppotential.DeepPotential`
        The main fit.
    potentials : list of :class:`~gala_deeppotential.DeepPotential`
        One fit per group of flow members, scaled like the main fit; for
        orbit spreads, integrate an orbit in each (:meth:`integrate_orbits`).
    groups : list of list of int
        The flow members behind each of ``potentials``.
    scale : float
        The bands' :math:`k`: their half-width is ``scale`` times
        :func:`student_t_factor` times the groups' standard deviation over
        :math:`\sqrt{G}`.
    wall_s : float
        Seconds spent fitting the groups (0 when read from a checkpoint).
    fits : list of :class:`~gala_deeppotential.PotentialFit`
        The group fits behind ``potentials``.
    resampled_stars : bool
        Whether each group also had its own bootstrap resample of the stars
        (see :func:`potential_bands`); the half-width is then not divided by
        :math:`\sqrt{G}`.
    calibration_error : float
        The relative error of the virial calibration's scale (0 when none
        was applied), which every fit shares; the bands add it in
        quadrature.
    """

    potential: DeepPotential
    potentials: list[DeepPotential]
    groups: list[list[int]]
    scale: float = BAND_SCALE
    wall_s: float = 0.0
    fits: list[PotentialFit] = field(default_factory=list, repr=False)
    resampled_stars: bool = False
    calibration_error: float = 0.0

    def _band(
        self, evaluate: Callable[[DeepPotential], u.Quantity], power: float = 1.0
    ) -> Band:
        """The band of a quantity that goes as the forces to ``power``."""
        members = u.Quantity([evaluate(pot) for pot in self.potentials])
        n = len(self.potentials)
        factor = self.scale * student_t_factor(n)
        if not self.resampled_stars:
            factor /= np.sqrt(n)
        return Band(
            value=evaluate(self.potential),
            members=members,
            scale=factor,
            common=power * self.calibration_error,
        )

    def energy(self, q: Any) -> Band:
        r""":math:`\Phi(\vec x)` [energy / mass], shape ``(N,)``."""
        return self._band(lambda pot: pot.energy(q))

    def acceleration(self, q: Any) -> Band:
        r""":math:`-\nabla\Phi(\vec x)` [acceleration], shape ``(3, N)``."""
        return self._band(lambda pot: pot.acceleration(q))

    def density(self, q: Any) -> Band:
        r""":math:`\rho = \nabla^2\Phi / 4\pi G` [mass density], shape ``(N,)``."""
        return self._band(lambda pot: pot.density(q))

    def circular_velocity(self, q: Any) -> Band:
        r""":math:`v_c = \sqrt{r\,\partial\Phi/\partial r}` [speed], shape ``(N,)``.

        As gala's ``circular_velocity``: exact in the plane z = 0 of an
        axisymmetric potential, and for a sphere.
        """
        return self._band(lambda pot: pot.circular_velocity(q), power=0.5)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the main fit and the group fits as gala YAML plus model files.

        ``folder`` gets ``main.yml``, ``group_0.yml``, ... (each with its
        ``.pt`` model file, readable by ``gala.potential.load``) and
        ``saved_bands.json`` with the groups and the band's settings; read it all
        back with :meth:`load`.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.potential.save(folder / "main.yml")
        for g, pot in enumerate(self.potentials):
            pot.save(folder / f"group_{g}.yml")
        record = {
            "groups": self.groups,
            "scale": self.scale,
            "resampled_stars": self.resampled_stars,
            "calibration_error": self.calibration_error,
        }
        path = folder / _SAVED_FILE
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> PotentialBands:
        """Read bands written by :meth:`save`."""
        folder = Path(folder)
        path = folder / _SAVED_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} holds no saved bands ({_SAVED_FILE}); write them with "
                "PotentialBands.save(folder)"
            )
        record = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            potential=DeepPotential.from_file(folder / "main.pt"),
            potentials=[
                DeepPotential.from_file(folder / f"group_{g}.pt")
                for g in range(len(record["groups"]))
            ],
            groups=record["groups"],
            scale=record["scale"],
            resampled_stars=record["resampled_stars"],
            calibration_error=record["calibration_error"],
        )

    def integrate_orbits(self, w0: Any, **kwargs: Any) -> list:
        """The orbit of ``w0`` in each group's potential (for its spread).

        ``kwargs`` go to gala's ``integrate_orbit`` (``dt``, ``n_steps``,
        ``Integrator``, ...); returns a list of :class:`~gala.dynamics.Orbit`.
        """
        return [pot.integrate_orbit(w0, **kwargs) for pot in self.potentials]


@dataclass
class Resampling:
    """How to train a group's flows on a bootstrap resample of the stars.

    Attributes
    ----------
    data : :class:`~gala_deeppotential.phasespace.PhaseSpaceData`
        The stars the main fit was fitted to.
    df_options : :class:`~gala_deeppotential.training_options.DFOptions`
        The main fit's flow options (the number of flows is replaced).
    deconvolve : bool
        Whether the main fit deconvolved the stars' measurement errors.
    completeness : callable, optional
        The selection's completeness at positions, as the main fit's flows
        were given it.
    """

    data: PhaseSpaceData
    df_options: DFOptions
    deconvolve: bool = False
    completeness: Callable[[np.ndarray], np.ndarray] | None = None

    def refit(self, n_flows: int, seed: int, **run: Any) -> FlowEnsemble:
        """``n_flows`` flows fitted to a bootstrap resample drawn with ``seed``."""
        rng = np.random.default_rng([seed, len(self.data)])
        pick = rng.integers(0, len(self.data), len(self.data))
        data = _subset(self.data, pick)
        draws = star_draws(data, self.deconvolve, self.df_options.rv_samples)
        options = dataclasses.replace(self.df_options, n_flows=n_flows)
        return fit_distribution_function(
            data.w, options, seed=seed, noisy=draws, selection=self.completeness, **run
        )


def _subset(data: PhaseSpaceData, pick: np.ndarray) -> PhaseSpaceData:
    """The stars ``pick`` (indices, repeats allowed) of ``data``."""
    return dataclasses.replace(
        data,
        x=data.x[pick],
        v=data.v[pick],
        has_rv=None if data.has_rv is None else data.has_rv[pick],
        astrometry=None
        if data.astrometry is None
        else {name: column[pick] for name, column in data.astrometry.items()},
        v_zero_rv=None if data.v_zero_rv is None else data.v_zero_rv[pick],
    )


def student_t_factor(groups: int) -> float:
    """The 84th percentile of Student's t with ``groups - 1`` degrees of freedom.

    A band of that many sample standard deviations of ``groups`` draws holds
    68% of further draws from the same normal distribution.
    """
    return float(stats.t.ppf(0.5 + _ONE_SIGMA / 2, groups - 1))


def member_groups(n_flows: int, groups: int) -> list[list[int]]:
    """Split members ``0 .. n_flows - 1`` into ``groups`` disjoint, equal groups.

    Members left over when ``groups`` does not divide ``n_flows`` are not
    used, so that every group fit sees a DF of the same quality.
    """
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"groups must be an integer, got {groups!r}")
    if not 2 <= groups <= n_flows:
        raise ValueError(
            f"groups={groups} is impossible with {n_flows} flow members: error "
            f"bars need 2 to {n_flows} groups (the default is {GROUPS}); fit "
            "the DF with more members (DFOptions.n_flows) for more groups"
        )
    size = n_flows // groups
    return [list(range(g * size, (g + 1) * size)) for g in range(groups)]


def potential_bands(
    df: FlowEnsemble,
    potential_fit: PotentialFit,
    units: UnitSystem | None,
    *,
    groups: int = GROUPS,
    scale: float = BAND_SCALE,
    seed: int | None = None,
    stars: Resampling | None = None,
    selection: Any = None,
    intrinsic_df: bool = False,
    device: Any = "cpu",
    threads: int | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
) -> PotentialBands:
    r"""Fit :math:`\Phi` to disjoint groups of flow members: the fit's error bars.

    :meth:`FitResult.bands <gala_deeppotential.FitResult.bands>` calls this
    with the pipeline's stages.

    Parameters
    ----------
    df : :class:`~gala_deeppotential.FlowEnsemble`
        The flows the main fit was fitted to.
    potential_fit : :class:`~gala_deeppotential.PotentialFit`
        The main fit (calibrated, if it was); its settings are reused, and
        its virial scale, if applied, is applied to each group fit.
    units : :class:`~gala.units.UnitSystem` or None
        The fit's unit system (None: dimensionless).
    groups : int
        Number of groups G (at least 2); each has ``n_flows // groups``
        members.
    scale : float
        The bands' :math:`k` (see :class:`PotentialBands`).
    seed : int, optional
        Group g is fitted with seed ``seed + 1 + g``; by default ``seed`` is
        the main fit's.
    stars : :class:`Resampling`, optional
        Resample the stars too: each group's flows (``n_flows // groups``
        of them) are trained afresh on a bootstrap resample of the stars
        (drawn with replacement), and the band is :math:`k\,t_{G-1}\,
        \sigma_G` (a group then errs as the main fit does where the stars'
        sampling noise dominates). It holds the sampling noise that the
        groups of members miss, for the cost of training the flows again.
        By default the groups are of ``df``'s members.
    selection, intrinsic_df
        As for :func:`~gala_deeppotential.fit_potential` (the main fit's).
    device, threads, progress
        As for :func:`~gala_deeppotential.fit_potential`.
    checkpoint_dir : str or path-like, optional
        Folder for the group fits: each is stored when it finishes, and a
        call with the same folder reuses them. A folder of other bands (other
        groups, seed or main fit) raises.

    Returns
    -------
    bands : :class:`PotentialBands`

    Raises
    ------
    ValueError
        For fewer than 2 groups, or more groups than flow members.
    """
    member_sets = member_groups(df.n_flows, groups)
    seed = int(potential_fit.config.get("seed", 0)) if seed is None else int(seed)
    options = {
        k: val for k, val in potential_fit.config.items() if k not in _NOT_OPTIONS
    }
    folder = _open_folder(checkpoint_dir, member_sets, seed, potential_fit, stars)
    start = time.perf_counter()
    fits = []
    for g, members in enumerate(member_sets):
        path = None if folder is None else folder / f"group_{g}.pt"
        if path is not None and path.is_file():
            fits.append(PotentialFit.load(path))
            continue
        if stars is None:
            group_df = df.select(members)
        else:
            group_df = stars.refit(
                len(members),
                seed + 1 + g,
                device=device,
                threads=threads,
                progress=progress,
                checkpoint_dir=None if folder is None else folder / f"df_{g}",
            )
        group_fit = fit_potential(
            group_df,
            options,
            seed=seed + 1 + g,
            device=device,
            threads=threads,
            progress=progress,
            selection=selection,
            intrinsic_df=intrinsic_df,
            pattern_speed=potential_fit.config.get("pattern_speed"),
        )
        if path is not None:
            group_fit.save(path)
        fits.append(group_fit)
    virial = potential_fit.virial
    if virial.get("applied"):
        fits = [apply_scale(one, virial) for one in fits]
    return PotentialBands(
        potential=DeepPotential.from_fit(potential_fit, units=units),
        potentials=[DeepPotential.from_fit(one, units=units) for one in fits],
        groups=member_sets,
        scale=float(scale),
        resampled_stars=stars is not None,
        calibration_error=_calibration_error(virial),
        wall_s=time.perf_counter() - start,
        fits=fits,
    )


def _calibration_error(virial: dict[str, Any]) -> float:
    """The relative error of an applied virial scale, else 0."""
    if not virial.get("applied"):
        return 0.0
    return float(virial["error"]) / float(virial["scale"])


def _open_folder(
    checkpoint_dir: str | os.PathLike | None,
    member_sets: Sequence[Sequence[int]],
    seed: int,
    potential_fit: PotentialFit,
    stars: Resampling | None,
) -> Path | None:
    """Claim ``checkpoint_dir`` for these bands, or check that it holds them."""
    if checkpoint_dir is None:
        return None
    settings = {
        "groups": [list(m) for m in member_sets],
        "seed": seed,
        "main_fit_sha256": io.state_checksum(*potential_fit.net.to_state()),
        "resampled_stars": stars is not None,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    return io.claim_folder(
        Path(checkpoint_dir),
        {"sha256": digest.hexdigest(), **settings},
        name=_MANIFEST_FILE,
        kind="error-bar checkpoint",
        other="the error bars of another fit (other groups, seed or main fit)",
    )
