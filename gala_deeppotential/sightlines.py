r"""Stars without a radial velocity: the unseen line-of-sight velocity integrated out.

A star whose heliocentric radial velocity :math:`v_r` is missing still has
a measured tangential velocity. Its Galactocentric velocity is

.. math::

    \vec v = \vec v_0 + v_r \hat n,

where :math:`\vec v_0` is the velocity its proper motions give with
:math:`v_r = 0` and :math:`\hat n` the unit vector from the Sun to the star.
Under members that factorize as :math:`p(\vec x)\, p(\vec v \mid \vec x)`,
the star's likelihood is :math:`p(\vec x) \int p(\vec v_0 + v_r \hat n \mid
\vec x)\, dv_r`: the density of its tangential velocity, which constrains
two of the three velocity components at its position. The integral is
estimated by importance sampling, with M draws :math:`v_{r,m} = \mu + w
z_m` (:math:`z_m` standard normal) from a Gaussian proposal :math:`q` and
weights :math:`1/q(v_{r,m})`,

.. math::

    \ln \int p\, dv_r \approx \ln \frac1M \sum_m
        \frac{p(\vec v_0 + v_{r,m} \hat n \mid \vec x)}{q(v_{r,m})},

the plain logarithm of the mean. Its expectation lies below the log of
the integral by about :math:`\mathrm{Var}(p/q)/(2M\,\mathbb E[p/q]^2)`, a
bias that vanishes when :math:`p` along the line has the proposal's shape,
so it pulls the fitted DF gently towards the proposal; it is not debiased
by the jackknife (as measurement errors are), because the jackknife's
correction grows without bound as the draws' values spread, and training
exploits that by carving the density between the draws.

The proposal follows the stars that do have a radial velocity
(:func:`radial_velocity_proposal`): the Gaussian of the velocities of a
star's nearest such neighbours, restricted to its line of sight, with the
width of that conditional Gaussian: a wider proposal, through the bias above,
broadens the fitted velocity distribution along the lines. This assumes, as the rest
of the fit does, that whether a star has a radial velocity does not depend
on its velocity.
"""

from __future__ import annotations

__all__ = [
    "MissingRadialVelocities",
    "missing_rv_draws",
    "radial_velocity_proposal",
    "sun_to_star",
]

import hashlib
import math
from typing import Any

import astropy.units as u
import numpy as np
import torch
from gala.units import UnitSystem
from scipy.spatial import cKDTree

from .sky import SkyFrame

#: Stars with a radial velocity whose velocities shape one star's proposal.
NEIGHBOURS = 128
#: Factor on the proposal's width beyond the neighbours' conditional spread.
#: On a local disc volume with 70% of the radial velocities missing, 1.2 and
#: 1.5 broadened the fitted azimuthal velocity dispersion by about 6% and 11%;
#: 1.0 leaves it as the complete catalogue gives it.
WIDEN = 1.0
# Neighbour velocities per chunk of the statistics (bounds memory to ~50 MB).
_CHUNK = 2**21
_LOG_2PI = math.log(2 * math.pi)


def sun_to_star(x: np.ndarray, galcen_frame: Any, length: float = 1.0) -> np.ndarray:
    """Unit vectors (N, 3) from the Sun to stars at Galactocentric ``x``.

    Parameters
    ----------
    x : :class:`numpy.ndarray`, shape (N, 3)
        Galactocentric positions, ``length`` units per kpc.
    galcen_frame : Galactocentric, dict or SkyFrame
        The frame (it places the Sun): a
        :class:`~astropy.coordinates.Galactocentric`, its record, or a
        :class:`~gala_deeppotential.sky.SkyFrame` of it, used as it is.
    length : float
        The positions' units per kpc.

    Examples
    --------
    >>> sun_to_star(np.array([[0.0, 0.0, 0.0]]), None).round(3)
    array([[ 1.   ,  0.   , -0.003]])
    """
    sky = galcen_frame if isinstance(galcen_frame, SkyFrame) else SkyFrame(galcen_frame)
    d = np.asarray(x, dtype=float) / length - sky.offset
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def radial_velocity_proposal(
    x: np.ndarray,
    v: np.ndarray,
    has_rv: np.ndarray,
    direction: np.ndarray,
    *,
    neighbours: int = NEIGHBOURS,
    widen: float = WIDEN,
) -> tuple[np.ndarray, np.ndarray]:
    r"""A Gaussian proposal for each missing radial velocity.

    For a star without a radial velocity, with :math:`\vec v = \vec v_0 +
    v_r \hat n`: the mean :math:`\vec\mu` and covariance :math:`\Sigma` of
    the velocities of its ``neighbours`` nearest stars (in position) that
    have one give, along its line, a Gaussian in :math:`v_r` of precision
    :math:`P = \hat n^\top \Sigma^{-1} \hat n` and mean :math:`\hat n^\top
    \Sigma^{-1} (\vec\mu - \vec v_0) / P`; the proposal has that mean and
    the width :math:`\mathrm{widen}/\sqrt P`.

    Parameters
    ----------
    x : :class:`numpy.ndarray`, shape (N, 3)
        Positions [length].
    v : :class:`numpy.ndarray`, shape (N, 3)
        Velocities [speed]: the full velocity where ``has_rv``, else
        :math:`\vec v_0`.
    has_rv : :class:`numpy.ndarray` of bool, shape (N,)
    direction : :class:`numpy.ndarray`, shape (N, 3)
        :math:`\hat n`, unit vectors from the Sun to the stars.
    neighbours : int
        Stars with a radial velocity per neighbourhood (fewer if fewer have
        one).
    widen : float
        Factor on the width.

    Returns
    -------
    mean, width : :class:`numpy.ndarray`, shape (N,)
        The proposal's mean and width of :math:`v_r` [speed]; zero for the
        stars with a radial velocity.

    Examples
    --------
    A star at rest among stars of dispersion 1 along each axis:

    >>> rng = np.random.default_rng(0)
    >>> x, v = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    >>> has_rv = np.arange(4000) > 0
    >>> v[0] = 0.0
    >>> n_hat = np.tile([1.0, 0.0, 0.0], (4000, 1))
    >>> mean, width = radial_velocity_proposal(x, v, has_rv, n_hat, neighbours=2000)
    >>> bool(abs(mean[0]) < 0.1 and abs(width[0] - 1.0) < 0.1)
    True
    """
    x, v = np.asarray(x, dtype=float), np.asarray(v, dtype=float)
    has_rv = np.asarray(has_rv, dtype=bool)
    mean, width = np.zeros(len(x)), np.zeros(len(x))
    missing = np.flatnonzero(~has_rv)
    n_rv = int(has_rv.sum())
    if not len(missing):
        return mean, width
    if n_rv < 2:
        raise ValueError(
            "the radial-velocity proposal needs at least 2 stars with a radial "
            f"velocity, got {n_rv}"
        )
    k = min(int(neighbours), n_rv)
    v_rv = v[has_rv]
    tree = cKDTree(x[has_rv])
    ridge = 1e-6 * float(np.trace(np.cov(v_rv.T))) * np.eye(3)
    per_chunk = max(1, _CHUNK // k)
    for chunk in np.array_split(missing, math.ceil(len(missing) / per_chunk)):
        _, index = tree.query(x[chunk], k=k)
        near = v_rv[index.reshape(len(chunk), k)]
        mu = near.mean(axis=1)
        dev = near - mu[:, None]
        cov = np.einsum("nki,nkj->nij", dev, dev) / max(k - 1, 1) + ridge
        n_hat = direction[chunk]
        solved = np.linalg.solve(cov, n_hat[..., None])[..., 0]
        precision = np.sum(n_hat * solved, axis=1)
        mean[chunk] = np.sum(solved * (mu - v[chunk]), axis=1) / precision
        width[chunk] = widen / np.sqrt(precision)
    return mean, width


class MissingRadialVelocities:
    r"""Draws of the full velocities of stars without a radial velocity.

    For a catalogue measured without errors: a star with a radial velocity
    is drawn as it is, one without as :math:`\vec v_0 + v_r \hat n` with
    :math:`v_r` from :func:`radial_velocity_proposal`, with the
    log-weight :math:`-\ln q(v_r)`. It offers the interface of
    :class:`~gala_deeppotential.deconvolution.NoisyAstrometry` that
    :class:`~gala_deeppotential.likelihood.StarLikelihood` uses.

    Parameters
    ----------
    x : :class:`numpy.ndarray`, shape (N, 3)
        Galactocentric positions in the fit's units.
    v : :class:`numpy.ndarray`, shape (N, 3)
        Galactocentric velocities in the fit's units; NaN for a star
        without a radial velocity.
    v_zero_rv : :class:`numpy.ndarray`, shape (N, 3)
        :math:`\vec v_0` of the stars without a radial velocity (the other
        rows are not read).
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict
        The fit's frame.
    units : :class:`~gala.units.UnitSystem`
        The fit's units.
    """

    #: The positions are exact: every draw of a star has the same one.
    fixed_positions = True
    #: Measurement errors are not modelled.
    has_errors = False
    #: Stars without a radial velocity are drawn with one.
    marginalizes_rv = True

    def __init__(
        self,
        x: np.ndarray,
        v: np.ndarray,
        v_zero_rv: np.ndarray,
        galcen_frame: Any,
        units: UnitSystem,
    ) -> None:
        length = float((1 * u.kpc).to_value(units["length"]))
        has_rv = np.isfinite(v).all(axis=1)
        base = np.where(has_rv[:, None], v, v_zero_rv)
        direction = sun_to_star(x, galcen_frame, length)
        mean, width = radial_velocity_proposal(x, base, has_rv, direction)
        self.has_rv = torch.as_tensor(has_rv)
        self.x = torch.as_tensor(np.asarray(x, dtype=float))
        self.base = torch.as_tensor(base)
        self.direction = torch.as_tensor(direction)
        self.proposal = torch.as_tensor(np.stack([mean, width], axis=1))
        digest = hashlib.sha256()
        for array in (self.x, self.base, self.direction, self.proposal):
            digest.update(array.numpy().tobytes())
        self.sha256 = digest.hexdigest()

    def __len__(self) -> int:
        return len(self.x)

    def draw(
        self, rows: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Draws of the full phase-space coordinates of some stars.

        Parameters
        ----------
        rows : :class:`torch.Tensor` of int, shape (...)
            The stars.
        noise : :class:`torch.Tensor`, shape (..., M, 4)
            Standard normal deviates; the last of the four draws the radial
            velocity (the others are for measurement errors, and unused).

        Returns
        -------
        y : :class:`torch.Tensor`, shape (..., M, 6), float64
            Positions and velocities in the fit's units.
        log_weight : :class:`torch.Tensor`, shape (..., M), float64
            :math:`-\ln q(v_r)` for a star without a radial velocity, zero
            for the others.
        """
        device = noise.device
        rows_cpu = rows.cpu()
        z = noise[..., 3].to(torch.float64)
        mean, width = self.proposal[rows_cpu].to(device).unbind(-1)
        v_r = mean[..., None] + width[..., None] * z
        base = self.base[rows_cpu].to(device)[..., None, :]
        v = base + v_r[..., None] * self.direction[rows_cpu].to(device)[..., None, :]
        x = self.x[rows_cpu].to(device)[..., None, :].expand_as(v)
        has_rv = self.has_rv[rows_cpu].to(device)[..., None]
        log_weight = torch.where(has_rv, 0.0, proposal_log_weight(width, z))
        return torch.cat([x, v], dim=-1), log_weight


def proposal_log_weight(width: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r""":math:`-\ln q(v_r)` of draws :math:`v_r = \mu + w z` (widths (...),
    deviates (..., M)); finite for a zero width, which marks no draw."""
    log_w = torch.log(width.clamp_min(1e-300))[..., None]
    return log_w + 0.5 * z.square() + 0.5 * _LOG_2PI


def missing_rv_draws(data: Any, rv_samples: int) -> MissingRadialVelocities | None:
    """The draws for a catalogue's stars without a radial velocity, or None.

    None when every star has one, when ``rv_samples`` is 0 (such stars then
    inform only the positions' density), or when the catalogue gave no
    proper motions for them (``data.v_zero_rv`` is None).

    Parameters
    ----------
    data : :class:`~gala_deeppotential.phasespace.PhaseSpaceData`
    rv_samples : int
    """
    if data.has_rv is None or not rv_samples or data.v_zero_rv is None:
        return None
    return MissingRadialVelocities(
        data.x, data.v, data.v_zero_rv, data.frame, data.units
    )
