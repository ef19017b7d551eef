r"""Measurement errors: Monte Carlo draws of the stars' true phase-space coordinates.

A star is measured as :math:`\hat o = (\hat\varpi, \hat\mu_{\alpha*},
\hat\mu_\delta, \hat v_r)` with Gaussian standard errors :math:`\sigma`, at an
exact sky position. The likelihood of a DF :math:`f(\vec x, \vec v)` for it is
the DF convolved with the errors,

.. math::

    p(\hat o) = \int f(\vec x, \vec v)\, \mathcal N(\hat o \mid o(\vec x, \vec
    v), \sigma)\, d^3x\, d^3v
    \;\propto\; \mathbb E_{o \sim \mathcal N(\hat o, \sigma)}
        \left[f\big(\vec x(o), \vec v(o)\big)\, d(o)^6\right],

where :math:`d = 1/\varpi` and :math:`d^6` is the Jacobian
:math:`|\partial(\vec x, \vec v)/\partial(\varpi, \mu_{\alpha*}, \mu_\delta,
v_r)|` up to factors fixed by the star's sky position: :math:`d^4` from the
positions (:math:`d^2\,\mathrm{d}d` and :math:`\mathrm{d}d = d^2
\mathrm{d}\varpi`) and :math:`(4.74\,d)^2` from the proper motions. For a star
without a radial velocity only its position is modelled, and the weight is
:math:`d^4`. :class:`NoisyAstrometry` makes the draws :math:`o_m` and their
log-weights; the flows are then trained on
:math:`\ln \frac1M \sum_m f(o_m)\, d_m^6`, the Monte Carlo estimate of the
convolved likelihood (its expectation is a lower bound on
:math:`\ln p(\hat o)` that tightens as M grows), which deconvolves the DF.

With ``marginalize_rv=True`` a star without a radial velocity is modelled
in full phase space too: its missing radial velocity is drawn from the
proposal of :func:`~gala_deeppotential.sightlines.radial_velocity_proposal`
in place of a measurement, and weighted by :math:`d^6 / q(v_r)`, so that
the average integrates it out (:mod:`gala_deeppotential.sightlines`).
"""

from __future__ import annotations

__all__ = ["NoisyAstrometry", "star_draws"]

import hashlib
from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np
import torch
from gala.units import UnitSystem

from .sightlines import (
    MissingRadialVelocities,
    missing_rv_draws,
    proposal_log_weight,
    radial_velocity_proposal,
    sun_to_star,
)
from .sky import SkyFrame

# The measured quantities, in the order of the noise's last axis.
_MEASURED = ("parallax", "pmra", "pmdec", "radial_velocity")


class NoisyAstrometry:
    """Stars' measured astrometry with Gaussian errors, as draws of phase space.

    Parameters
    ----------
    astrometry : mapping
        As :attr:`~gala_deeppotential.phasespace.PhaseSpaceData.astrometry`:
        ``ra``, ``dec`` [rad], ``parallax`` [mas], ``pmra``, ``pmdec``
        [mas/yr], ``radial_velocity`` [km/s] (NaN where missing), and the
        four ``_error`` entries.
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict
        The fit's frame.
    units : :class:`~gala.units.UnitSystem`
        The fit's units.
    marginalize_rv : bool
        Draw the missing radial velocities from a proposal and integrate
        them out (the stars' tangential velocities then inform the DF);
        else a star without one informs only the positions' density.

    Examples
    --------
    >>> astrometry = {
    ...     "ra": np.array([0.1]), "dec": np.array([0.2]),
    ...     "parallax": np.array([1.0]), "pmra": np.array([5.0]),
    ...     "pmdec": np.array([-3.0]), "radial_velocity": np.array([10.0]),
    ...     "parallax_error": np.array([0.1]), "pmra_error": np.array([0.1]),
    ...     "pmdec_error": np.array([0.1]), "radial_velocity_error": np.array([1.0]),
    ... }
    >>> from gala.units import galactic
    >>> stars = NoisyAstrometry(astrometry, None, galactic)
    >>> y, log_w = stars.draw(torch.tensor([0]), torch.zeros(1, 3, 4))
    >>> y.shape, log_w.shape
    (torch.Size([1, 3, 6]), torch.Size([1, 3]))
    """

    #: Every draw of a star has its own position (its parallax is drawn).
    fixed_positions = False
    #: The draws follow measurement errors.
    has_errors = True

    def __init__(
        self,
        astrometry: Mapping[str, np.ndarray],
        galcen_frame: Any,
        units: UnitSystem,
        marginalize_rv: bool = False,
    ) -> None:
        self.sky = SkyFrame(galcen_frame)
        self.length = float((1 * u.kpc).to_value(units["length"]))
        self.speed = float((1 * u.km / u.s).to_value(units["length"] / units["time"]))
        rv = np.asarray(astrometry["radial_velocity"], dtype=float)
        self.has_rv = torch.as_tensor(np.isfinite(rv))
        measured = np.stack(
            [np.asarray(astrometry[key], dtype=float) for key in _MEASURED], axis=1
        )
        sigma = np.stack(
            [np.asarray(astrometry[f"{key}_error"], dtype=float) for key in _MEASURED],
            axis=1,
        )
        # Stars without a radial velocity get a zero one, never used unless
        # the proposal below replaces it.
        measured[:, 3] = np.where(np.isfinite(rv), rv, 0.0)
        sigma[:, 3] = np.where(np.isfinite(rv), sigma[:, 3], 0.0)
        self.marginalizes_rv = bool(marginalize_rv) and not bool(self.has_rv.all())
        if self.marginalizes_rv:
            measured[:, 3], sigma[:, 3] = self._proposal(astrometry, measured, rv)
        self.measured = torch.as_tensor(measured)
        self.sigma = torch.as_tensor(sigma)
        self.sky_position = torch.as_tensor(
            np.stack([astrometry["ra"], astrometry["dec"]], axis=1), dtype=torch.float64
        )
        digest = hashlib.sha256()
        for array in (self.measured, self.sigma, self.sky_position):
            digest.update(array.numpy().tobytes())
        self.sha256 = digest.hexdigest()

    def __len__(self) -> int:
        return self.measured.shape[0]

    def _proposal(
        self, astrometry: Mapping[str, np.ndarray], measured: np.ndarray, rv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and width [km/s] of the missing radial velocities' proposal
        (the measured value and its error for the other stars)."""
        point = dict(zip(_MEASURED, measured.T, strict=True))
        x, v = self.sky.galactocentric(
            {"ra": astrometry["ra"], "dec": astrometry["dec"], **point}
        )
        has_rv = np.isfinite(rv)
        direction = sun_to_star(x, self.sky)
        mean, width = radial_velocity_proposal(x, v, has_rv, direction)
        errors = np.asarray(astrometry["radial_velocity_error"], dtype=float)
        return np.where(has_rv, rv, mean), np.where(has_rv, errors, width)

    def point_estimates(self) -> torch.Tensor:
        """Phase space at the measured values, (N, 6) in the fit's units;
        NaN velocities for stars without a radial velocity."""
        rows = torch.arange(len(self))
        y, _ = self.draw(rows, torch.zeros(len(self), 1, 4, dtype=torch.float64))
        y = y[:, 0]
        y[~self.has_rv, 3:] = torch.nan
        return y

    def draw(
        self, rows: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Draws of the true phase-space coordinates of some stars.

        Parameters
        ----------
        rows : :class:`torch.Tensor` of int, shape (...)
            The stars.
        noise : :class:`torch.Tensor`, shape (..., M, 4)
            Standard normal deviates of the parallax, the proper motions and
            the radial velocity, M per star.

        Returns
        -------
        y : :class:`torch.Tensor`, shape (..., M, 6), float64
            Galactocentric positions and velocities in the fit's units (the
            velocities of stars without a radial velocity are meaningless).
        log_weight : :class:`torch.Tensor`, shape (..., M), float64
            :math:`6 \ln d` (:math:`4 \ln d` without a radial velocity,
            :math:`6 \ln d - \ln q(v_r)` when it is drawn from the
            proposal) [d in kpc]; :math:`-\infty` for a draw with a
            parallax :math:`\leq 0`, which is placed at the measured one.
        """
        device = noise.device
        rows_cpu = rows.cpu()
        measured = self.measured[rows_cpu].to(device)[..., None, :]
        sigma = self.sigma[rows_cpu].to(device)[..., None, :]
        obs = measured + sigma * noise.to(torch.float64)
        parallax = obs[..., 0]
        behind = parallax <= 0
        parallax = torch.where(behind, measured[..., 0].expand_as(parallax), parallax)
        sky = self.sky_position[rows_cpu].to(device)[..., None, :]
        x, v = self.sky.galactocentric(
            {
                "ra": sky[..., 0],
                "dec": sky[..., 1],
                "parallax": parallax,
                "pmra": obs[..., 1],
                "pmdec": obs[..., 2],
                "radial_velocity": obs[..., 3],
            }
        )
        has_rv = self.has_rv[rows_cpu].to(device)[..., None]
        power = torch.where(has_rv | self.marginalizes_rv, 6.0, 4.0).to(torch.float64)
        log_weight = -power * torch.log(parallax)
        if self.marginalizes_rv:
            drawn = proposal_log_weight(sigma[..., 0, 3], noise[..., 3].to(obs))
            log_weight = log_weight + torch.where(has_rv, 0.0, drawn)
        log_weight = torch.where(behind, -torch.inf, log_weight)
        return torch.cat([x * self.length, v * self.speed], dim=-1), log_weight


def star_draws(
    data: Any, deconvolve: bool, rv_samples: int
) -> NoisyAstrometry | MissingRadialVelocities | None:
    """What the flows draw for a catalogue's stars, or None for exact stars.

    Parameters
    ----------
    data : :class:`~gala_deeppotential.phasespace.PhaseSpaceData`
    deconvolve : bool
        Deconvolve the measurement errors of ``data.astrometry``.
    rv_samples : int
        Draws of each missing radial velocity (0: none, see
        :func:`~gala_deeppotential.sightlines.missing_rv_draws`).

    Returns
    -------
    draws : NoisyAstrometry, MissingRadialVelocities or None
        The measurements with their errors (and missing radial velocities),
        else the missing radial velocities alone, else None.
    """
    if deconvolve:
        return NoisyAstrometry(data.astrometry, data.frame, data.units, rv_samples > 0)
    return missing_rv_draws(data, rv_samples)
