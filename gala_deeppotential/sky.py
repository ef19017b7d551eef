r"""Astrometry and the Galactocentric frame as plain arrays: the transforms behind
measurement errors and selection functions.

The Galactocentric frame is ICRS shifted and rotated, so positions map by one
affine transform, :math:`\vec x_{gc} = A \vec x_{icrs} + \vec b`, and
velocities by :math:`\vec v_{gc} = A \vec v_{icrs} + \vec v_\odot`.
:class:`SkyFrame` takes :math:`A`, :math:`\vec b` and :math:`\vec v_\odot`
from astropy once and then applies them to millions of points (or
Monte Carlo draws of them) in numpy or torch, far faster than building
:class:`~astropy.coordinates.SkyCoord` objects.
"""

from __future__ import annotations

__all__ = ["ASTROMETRY", "K_ASTROMETRY", "SkyFrame"]

from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np
import torch
from astropy.coordinates import ICRS, CartesianDifferential, Galactic, SkyCoord

from .phasespace import DEFAULT_GALCEN_FRAME, galcen_frame_from_dict

#: km/s per (kpc mas/yr): a tangential speed is ``K_ASTROMETRY * distance * mu``.
K_ASTROMETRY = float(
    (1 * u.kpc * u.mas / u.yr).to_value(u.km / u.s, u.dimensionless_angles())
)

#: The astrometric observables of a star, in the order :class:`SkyFrame` uses,
#: with their units: ICRS right ascension and declination [rad], parallax
#: [mas], proper motions :math:`\mu_{\alpha*}`, :math:`\mu_\delta` [mas/yr]
#: and heliocentric radial velocity [km/s].
ASTROMETRY = ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity")


class SkyFrame:
    """The Galactocentric frame as an affine map of ICRS Cartesian coordinates.

    Parameters
    ----------
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict, optional
        The frame, or its record
        (:func:`~gala_deeppotential.phasespace.galcen_frame_to_dict`);
        :data:`~gala_deeppotential.phasespace.DEFAULT_GALCEN_FRAME` by
        default.

    Attributes
    ----------
    matrix : :class:`numpy.ndarray`, shape (3, 3)
        :math:`A`, ICRS axes to Galactocentric axes.
    offset : :class:`numpy.ndarray`, shape (3,)
        :math:`\\vec b` [kpc]: the Sun's Galactocentric position.
    sun_velocity : :class:`numpy.ndarray`, shape (3,)
        :math:`\\vec v_\\odot` [km/s]: the Sun's Galactocentric velocity.
    galactic : :class:`numpy.ndarray`, shape (3, 3)
        ICRS axes to Galactic (l, b) axes.

    Examples
    --------
    >>> frame = SkyFrame()
    >>> np.round(frame.offset, 4)
    array([-8.122 ,  0.    ,  0.0208])
    """

    def __init__(self, galcen_frame: Any = None) -> None:
        if galcen_frame is None:
            galcen_frame = DEFAULT_GALCEN_FRAME
        elif isinstance(galcen_frame, Mapping):
            galcen_frame = galcen_frame_from_dict(galcen_frame)
        self.galcen_frame = galcen_frame
        # Four points and three velocities fix the affine maps exactly.
        corners = np.vstack([np.zeros(3), np.eye(3)]) * u.kpc
        moving = SkyCoord(
            x=np.zeros(4) * u.kpc,
            y=np.zeros(4) * u.kpc,
            z=np.zeros(4) * u.kpc,
            v_x=corners[:, 0].value * u.km / u.s,
            v_y=corners[:, 1].value * u.km / u.s,
            v_z=corners[:, 2].value * u.km / u.s,
            frame=ICRS(),
            representation_type="cartesian",
            differential_type=CartesianDifferential,
        )
        placed = SkyCoord(
            x=corners[:, 0],
            y=corners[:, 1],
            z=corners[:, 2],
            frame=ICRS(),
            representation_type="cartesian",
        ).transform_to(galcen_frame)
        pos = placed.cartesian.xyz.to_value(u.kpc).T
        vel = moving.transform_to(galcen_frame).velocity.d_xyz.to_value(u.km / u.s).T
        self.offset = pos[0]
        self.matrix = (pos[1:] - pos[0]).T
        self.sun_velocity = vel[0]
        unit = SkyCoord(
            x=[1.0, 0, 0],
            y=[0, 1.0, 0],
            z=[0, 0, 1.0],
            frame=ICRS(),
            representation_type="cartesian",
        ).transform_to(Galactic())
        self.galactic = unit.cartesian.xyz.value  # columns: ICRS unit vectors

    def to_icrs(self, x: np.ndarray) -> np.ndarray:
        """Galactocentric positions (N, 3) [kpc] as ICRS Cartesian ones [kpc]."""
        return (np.asarray(x) - self.offset) @ self.matrix

    def heliocentric(self, x: np.ndarray, frame: str = "icrs"):
        """Distances [kpc] and sky directions of Galactocentric positions (N, 3).

        Parameters
        ----------
        x : :class:`numpy.ndarray`, shape (N, 3)
            Galactocentric positions [kpc].
        frame : {"icrs", "galactic"}
            Frame of the returned longitude and latitude.

        Returns
        -------
        distance, lon, lat : :class:`numpy.ndarray`, shape (N,)
            [kpc], [rad], [rad].
        """
        icrs = self.to_icrs(x)
        if frame == "galactic":
            icrs = icrs @ self.galactic.T
        elif frame != "icrs":
            raise ValueError(f"frame must be 'icrs' or 'galactic', got {frame!r}")
        distance = np.linalg.norm(icrs, axis=1)
        lon = np.arctan2(icrs[:, 1], icrs[:, 0])
        lat = np.arcsin(np.clip(icrs[:, 2] / np.maximum(distance, 1e-300), -1, 1))
        return distance, np.mod(lon, 2 * np.pi), lat

    def observe(self, x: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        """The astrometry of stars at Galactocentric ``x`` [kpc], ``v`` [km/s].

        Returns
        -------
        astrometry : dict of str to :class:`numpy.ndarray`
            The keys of :data:`ASTROMETRY`, in its units.
        """
        pos = self.to_icrs(x)
        vel = (np.asarray(v) - self.sun_velocity) @ self.matrix
        distance = np.linalg.norm(pos, axis=1)
        ra = np.mod(np.arctan2(pos[:, 1], pos[:, 0]), 2 * np.pi)
        dec = np.arcsin(pos[:, 2] / distance)
        r_hat, ra_hat, dec_hat = _sky_basis(ra, dec, np)
        k_d = K_ASTROMETRY * distance
        return {
            "ra": ra,
            "dec": dec,
            "parallax": 1 / distance,
            "pmra": np.sum(vel * ra_hat, axis=1) / k_d,
            "pmdec": np.sum(vel * dec_hat, axis=1) / k_d,
            "radial_velocity": np.sum(vel * r_hat, axis=1),
        }

    def galactocentric(self, astrometry: Mapping[str, Any]):
        r"""Galactocentric positions [kpc] and velocities [km/s] of astrometry.

        Works on numpy arrays and on torch tensors alike, and broadcasts, so
        Monte Carlo draws of the astrometry of many stars (shape (N, M))
        transform in one call.

        Parameters
        ----------
        astrometry : mapping
            The keys of :data:`ASTROMETRY`, in its units; the parallax must be
            positive.

        Returns
        -------
        x, v : array or tensor, shape (..., 3)
        """
        xp = torch if isinstance(astrometry["parallax"], torch.Tensor) else np
        r_hat, ra_hat, dec_hat = _sky_basis(astrometry["ra"], astrometry["dec"], xp)
        distance = 1 / astrometry["parallax"]
        k_d = (K_ASTROMETRY * distance)[..., None]
        vel = (
            astrometry["radial_velocity"][..., None] * r_hat
            + k_d * astrometry["pmra"][..., None] * ra_hat
            + k_d * astrometry["pmdec"][..., None] * dec_hat
        )
        pos = distance[..., None] * r_hat
        matrix, offset, sun = self.matrix, self.offset, self.sun_velocity
        if xp is torch:
            matrix, offset, sun = (
                torch.as_tensor(a, dtype=pos.dtype, device=pos.device)
                for a in (matrix, offset, sun)
            )
        return pos @ matrix.T + offset, vel @ matrix.T + sun


def _sky_basis(ra, dec, xp):
    """Unit vectors toward a star and along increasing ra and dec, (..., 3) each."""
    cos_ra, sin_ra, cos_dec, sin_dec = xp.cos(ra), xp.sin(ra), xp.cos(dec), xp.sin(dec)
    stack = np.stack if xp is np else torch.stack
    r_hat = stack([cos_dec * cos_ra, cos_dec * sin_ra, sin_dec], -1)
    ra_hat = stack([-sin_ra, cos_ra, 0 * ra], -1)
    dec_hat = stack([-sin_dec * cos_ra, -sin_dec * sin_ra, cos_dec], -1)
    return r_hat, ra_hat, dec_hat
