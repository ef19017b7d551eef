"""HEALPix pixel indices of sky directions, for selection-function masks."""

from __future__ import annotations

__all__ = ["ORDERS", "ang2pix", "npix2nside"]

import numpy as np

#: Pixel orderings of a HEALPix map, as healpy and astropy-healpix name them.
ORDERS = ("ring", "nested")


def npix2nside(npix: int) -> int:
    """The resolution ``nside`` of a map of ``npix`` pixels (:math:`12\\,n_{side}^2`).

    Raises
    ------
    ValueError
        If ``npix`` is not :math:`12\\,n_{side}^2` for a power of two ``nside``.
    """
    nside = round(float(np.sqrt(npix / 12)))
    if nside < 1 or 12 * nside * nside != npix or nside & (nside - 1):
        raise ValueError(
            f"a HEALPix map has 12 * nside**2 pixels with nside a power of two; "
            f"got {npix} pixels"
        )
    return nside


def ang2pix(nside: int, lon: np.ndarray, lat: np.ndarray, order: str = "ring"):
    """HEALPix pixel of each direction (Górski et al. 2005, ApJ 622, 759).

    Parameters
    ----------
    nside : int
        Resolution, a power of two.
    lon, lat : array
        Longitude and latitude [rad], in the map's own frame.
    order : {"ring", "nested"}
        Pixel ordering of the map.

    Returns
    -------
    pix : :class:`numpy.ndarray` of int64

    Examples
    --------
    >>> int(ang2pix(1, np.array([0.1]), np.array([1.5]))[0])
    0
    >>> int(ang2pix(1, np.array([0.1]), np.array([-1.5]), order="nested")[0])
    8
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    npix2nside(12 * nside * nside)
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    z = np.sin(lat)
    # Longitude in units of a quarter turn, in [0, 4).
    tt = np.mod(lon, 2 * np.pi) / (np.pi / 2)
    tt = np.where(tt >= 4, 0.0, tt)
    polar = np.abs(z) > 2 / 3
    if order == "ring":
        return np.where(polar, _ring_polar(nside, z, tt), _ring_equator(nside, z, tt))
    return _nested(nside, z, tt, polar)


def _ring_equator(nside: int, z: np.ndarray, tt: np.ndarray) -> np.ndarray:
    # Indices of the ascending and descending edge lines through the point.
    up = np.floor(nside * (0.5 + tt) - nside * z * 0.75).astype(np.int64)
    down = np.floor(nside * (0.5 + tt) + nside * z * 0.75).astype(np.int64)
    ring = nside + 1 + up - down  # counted from z = 2/3, in [1, 2 nside + 1]
    shift = 1 - (ring & 1)
    ip = np.mod((up + down - nside + shift + 1) // 2, 4 * nside)
    return 2 * nside * (nside - 1) + (ring - 1) * 4 * nside + ip


def _cap_lines(nside: int, z: np.ndarray, tt: np.ndarray):
    """Edge-line indices of a point in a polar cap, and its fractional longitude."""
    frac = tt - np.floor(tt)
    width = nside * np.sqrt(3 * (1 - np.minimum(np.abs(z), 1.0)))
    up = np.floor(frac * width).astype(np.int64)
    down = np.floor((1 - frac) * width).astype(np.int64)
    return up, down


def _ring_polar(nside: int, z: np.ndarray, tt: np.ndarray) -> np.ndarray:
    up, down = _cap_lines(nside, z, tt)
    ring = up + down + 1  # counted from the nearer pole
    ip = np.mod(np.floor(tt * ring).astype(np.int64), 4 * ring)
    north = 2 * ring * (ring - 1) + ip
    south = 12 * nside * nside - 2 * ring * (ring + 1) + ip
    return np.where(z > 0, north, south)


def _nested(nside: int, z: np.ndarray, tt: np.ndarray, polar: np.ndarray):
    # Equatorial faces 4-7 and their neighbours.
    up = np.floor(nside * (0.5 + tt) - nside * z * 0.75).astype(np.int64)
    down = np.floor(nside * (0.5 + tt) + nside * z * 0.75).astype(np.int64)
    bits = nside.bit_length() - 1
    face_up, face_down = up >> bits, down >> bits
    face = np.where(
        face_up == face_down,
        face_up | 4,
        np.where(face_up < face_down, face_up, face_down + 8),
    )
    ix = down & (nside - 1)
    iy = nside - (up & (nside - 1)) - 1
    # Polar faces 0-3 (north) and 8-11 (south).
    quarter = np.minimum(np.floor(tt).astype(np.int64), 3)
    cap_up, cap_down = _cap_lines(nside, z, tt)
    cap_up, cap_down = np.minimum(cap_up, nside - 1), np.minimum(cap_down, nside - 1)
    north = z >= 0
    face = np.where(polar, np.where(north, quarter, quarter + 8), face)
    ix = np.where(polar, np.where(north, nside - cap_down - 1, cap_up), ix)
    iy = np.where(polar, np.where(north, nside - cap_up - 1, cap_down), iy)
    return face * nside * nside + _interleave(ix) + 2 * _interleave(iy)


def _interleave(i: np.ndarray) -> np.ndarray:
    """Spread the bits of ``i`` to the even bit positions (a Morton code half)."""
    i = i.astype(np.int64)
    out = np.zeros_like(i)
    for bit in range(30):
        out |= ((i >> bit) & 1) << (2 * bit)
    return out
