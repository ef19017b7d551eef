r"""Selection functions: which stars a survey sees, and what that does to the DF.

A survey sees the stars of a stationary DF :math:`f` through a selection
function :math:`S(\vec x) \in [0, 1]`, the probability that a star at
:math:`\vec x` enters the catalogue. The flows learn the observed DF
:math:`f_{obs} \propto f\,S`, so the DF that the collisionless Boltzmann
equation holds for has

.. math::

    \nabla_x \ln f = \nabla_x \ln f_{obs} - \nabla_x \ln S,
    \qquad \nabla_v \ln f = \nabla_v \ln f_{obs},

and Φ can be fitted only where :math:`S` is not negligible. Where :math:`S`
jumps (the edge of a footprint or of a distance limit) the flows smooth the
jump, so the Φ fit also keeps away from edges by a margin:
:meth:`BoundSelection.interior`.

Selections here depend on position only (no magnitudes or colours), and are
functions of the *true* positions; a cut on noisy parallaxes is not one.
"""

from __future__ import annotations

__all__ = [
    "BoundSelection",
    "CallableSelection",
    "SelectionFunction",
    "SkySelection",
    "as_selection",
]

from collections.abc import Callable
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, SkyCoord

from .ball_map import BallMap
from .directions import sphere_directions
from .healpix import ORDERS, ang2pix, npix2nside
from .phasespace import CatalogueError
from .sky import SkyFrame

#: Default margin of the Φ points from the edges of a selection, as a fraction
#: of the 99th-percentile heliocentric distance of the stars.
MARGIN_FRACTION = 0.05
#: Completeness below which a position counts as unobserved for the Φ fit.
MIN_COMPLETENESS = 0.01
# Probe directions of the margin test, and the finite-difference step of
# grad ln S as a fraction of the margin.
_N_PROBES = 26
_STEP_FRACTION = 1e-3


class SelectionFunction:
    r"""A survey's completeness :math:`S \in [0, 1]` as a function of position.

    Subclasses implement :meth:`completeness` on heliocentric distances and
    sky directions. :class:`SkySelection` is the ready form (a HEALPix
    footprint, a distance limit and a completeness that varies with
    distance); :class:`CallableSelection` wraps any function of a
    :class:`~astropy.coordinates.SkyCoord`.

    Parameters
    ----------
    margin : :class:`~astropy.units.Quantity` [length], optional
        How far inside the selection's edges the Φ fit keeps its points. By
        default :data:`MARGIN_FRACTION` of the stars' 99th-percentile
        heliocentric distance.
    """

    #: Frame of the longitudes and latitudes :meth:`completeness` takes.
    frame = "icrs"

    def __init__(self, *, margin: u.Quantity | None = None) -> None:
        if margin is not None:
            margin = u.Quantity(margin)
            if margin.unit.physical_type != "length" or not margin.value > 0:
                raise ValueError(f"margin must be a positive length, got {margin!r}")
        self.margin = margin

    def completeness(
        self, distance: np.ndarray, lon: np.ndarray, lat: np.ndarray
    ) -> np.ndarray:
        """:math:`S` at heliocentric ``distance`` [kpc], ``lon``, ``lat`` [rad].

        Returns
        -------
        S : :class:`numpy.ndarray`
            Values in [0, 1].
        """
        raise NotImplementedError

    @property
    def is_distance_limit(self) -> bool:
        """Whether :math:`S` is one within a distance limit and zero beyond:
        a sphere about the observer, with no footprint and no completeness.

        The automatic choice of the truncated likelihood reads it (see
        :func:`~gala_deeppotential.training_options.truncation_for`). False
        for a selection of unknown form.
        """
        return False

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for the fit's report."""
        return {"kind": type(self).__name__}

    def bind(
        self,
        galcen_frame: Any,
        length: u.UnitBase,
        stars: np.ndarray,
        exact: bool = True,
    ) -> BoundSelection:
        """This selection on the Galactocentric positions of a fit.

        See :class:`BoundSelection`.
        """
        return BoundSelection(self, galcen_frame, length, stars, exact)


class SkySelection(SelectionFunction):
    r"""A footprint on the sky times a completeness in distance.

    .. math::

        S(\vec x) = M(\ell, b)\; C(d)\; [d < d_{max}],

    with :math:`M` a HEALPix map, :math:`C` a smooth function of the
    heliocentric distance :math:`d` and :math:`d_{max}` a distance limit.
    Each part is optional.

    Parameters
    ----------
    mask : array, optional
        HEALPix map of :math:`M`, values in [0, 1] (booleans work), of
        length :math:`12\,n_{side}^2`; all sky by default.
    order : {"ring", "nested"}
        The map's pixel ordering.
    frame : {"galactic", "icrs"}
        The map's frame.
    distance_limit : :class:`~astropy.units.Quantity` [length], optional
        :math:`d_{max}`.
    completeness : callable, optional
        :math:`C(d)`: takes a Quantity of distances, returns values in
        (0, 1]. It must be smooth, since its gradient enters the DF.
    margin : :class:`~astropy.units.Quantity` [length], optional
        See :class:`SelectionFunction`.

    Examples
    --------
    All stars out to 1.5 kpc:

    >>> lon, lat = np.radians([[0.0, 90.0], [5.0, 45.0]])
    >>> sel = SkySelection(distance_limit=1.5 * u.kpc)
    >>> sel.completeness(np.array([1.0, 2.0]), lon, lat)
    array([1., 0.])
    """

    def __init__(
        self,
        mask: np.ndarray | None = None,
        *,
        order: str = "ring",
        frame: str = "galactic",
        distance_limit: u.Quantity | None = None,
        completeness: Callable[[u.Quantity], np.ndarray] | None = None,
        margin: u.Quantity | None = None,
    ) -> None:
        super().__init__(margin=margin)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if frame not in ("galactic", "icrs"):
            raise ValueError(f"frame must be 'galactic' or 'icrs', got {frame!r}")
        self.order, self.frame = order, frame
        self.mask = None
        if mask is not None:
            mask = np.asarray(mask, dtype=float)
            self.nside = npix2nside(mask.size)
            if mask.ndim != 1 or np.any((mask < 0) | (mask > 1) | ~np.isfinite(mask)):
                raise ValueError("mask must be a 1-D HEALPix map of values in [0, 1]")
            self.mask = mask
        if distance_limit is not None:
            distance_limit = u.Quantity(distance_limit).to(u.kpc)
            if not distance_limit.value > 0:
                raise ValueError(
                    f"distance_limit must be positive, got {distance_limit}"
                )
        self.distance_limit = distance_limit
        if completeness is not None and not callable(completeness):
            raise TypeError("completeness must be a function of distance")
        self._completeness = completeness

    @property
    def is_distance_limit(self) -> bool:
        full_sky = self.mask is None or bool(np.all(self.mask == 1))
        return (
            self.distance_limit is not None and full_sky and self._completeness is None
        )

    def completeness(self, distance, lon, lat) -> np.ndarray:
        S = np.ones(np.shape(distance))
        if self.mask is not None:
            S = S * self.mask[ang2pix(self.nside, lon, lat, self.order)]
        if self.distance_limit is not None:
            S = np.where(distance < self.distance_limit.value, S, 0.0)
        if self._completeness is not None:
            C = np.asarray(self._completeness(distance * u.kpc), dtype=float)
            if C.shape != np.shape(distance):
                raise ValueError(
                    "completeness(distance) must return one value per distance, "
                    f"got shape {C.shape} for {np.shape(distance)}"
                )
            S = S * C
        return S

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.mask is not None:
            out.update(
                nside=self.nside,
                order=self.order,
                frame=self.frame,
                sky_fraction=float(self.mask.mean()),
            )
        if self.distance_limit is not None:
            out["distance_limit_kpc"] = float(self.distance_limit.value)
        out["completeness_in_distance"] = self._completeness is not None
        return out


class CallableSelection(SelectionFunction):
    """Any function of sky positions as a selection function.

    Parameters
    ----------
    function : callable
        Takes an ICRS :class:`~astropy.coordinates.SkyCoord` with distances
        and returns :math:`S` in [0, 1], one value per star. Where it is
        positive it must be smooth (its gradient enters the DF); it may
        jump to zero at edges.
    margin : :class:`~astropy.units.Quantity` [length], optional
        See :class:`SelectionFunction`.

    Examples
    --------
    >>> sel = CallableSelection(lambda c: np.exp(-c.distance.to_value(u.kpc)))
    >>> np.round(sel.completeness(np.array([1.0]), np.zeros(1), np.zeros(1)), 4)
    array([0.3679])
    """

    def __init__(
        self, function: Callable[[SkyCoord], Any], *, margin: u.Quantity | None = None
    ) -> None:
        super().__init__(margin=margin)
        if not callable(function):
            raise TypeError("a selection function must be callable")
        self.function = function

    def completeness(self, distance, lon, lat) -> np.ndarray:
        coord = SkyCoord(
            ra=lon * u.rad, dec=lat * u.rad, distance=distance * u.kpc, frame=ICRS()
        )
        S = np.asarray(self.function(coord), dtype=float)
        if S.shape != np.shape(distance):
            raise ValueError(
                "the selection function must return one value per star, got "
                f"shape {S.shape} for {np.shape(distance)} stars"
            )
        return S


def as_selection(selection: Any) -> SelectionFunction | None:
    """A :class:`SelectionFunction` from one, a callable of a SkyCoord, or None."""
    if selection is None or isinstance(selection, SelectionFunction):
        return selection
    if callable(selection):
        return CallableSelection(selection)
    raise TypeError(
        "selection must be a SelectionFunction (e.g. SkySelection) or a function "
        f"of an ICRS SkyCoord returning completeness; got {type(selection).__name__}"
    )


class BoundSelection:
    """A selection function on the Galactocentric positions of one fit.

    What the Φ fit needs of it: :meth:`interior`, where to fit, and
    :meth:`grad_log`, the term that turns the observed DF into the
    stationary one.

    Parameters
    ----------
    selection : :class:`SelectionFunction`
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict
        The frame of the fit.
    length : :class:`~astropy.units.UnitBase`
        The fit's length unit.
    stars : :class:`numpy.ndarray`, shape (N, 3)
        The catalogue's positions, in ``length``; every star must have
        :math:`S > 0`.
    exact : bool
        Whether ``stars`` are exact positions. Positions from noisy
        parallaxes scatter out of the selection, so there the check is
        skipped and :attr:`n_outside` counts those stars.

    Raises
    ------
    ~gala_deeppotential.phasespace.CatalogueError
        If the selection is zero (or not finite) at some exact stars.
    """

    def __init__(
        self,
        selection: SelectionFunction,
        galcen_frame: Any,
        length: u.UnitBase,
        stars: np.ndarray,
        exact: bool = True,
    ) -> None:
        self.selection = selection
        self.sky = SkyFrame(galcen_frame)
        self.to_kpc = float((1 * length).to_value(u.kpc))
        S = self.completeness(stars)
        bad = ~(np.isfinite(S) & (S > 0) & (S <= 1))
        self.n_outside = int(bad.sum())
        if bad.any() and exact:
            rows = np.flatnonzero(bad)[:5].tolist()
            raise CatalogueError(
                f"the selection function is zero, above one or not finite at "
                f"{int(bad.sum())} of the {len(S)} stars (first rows {rows}): "
                "a star the survey cannot see cannot be in the catalogue; fix the "
                "selection function, or drop those stars"
            )
        if selection.margin is not None:
            margin_kpc = float(selection.margin.to_value(u.kpc))
        else:
            distance = self.sky.heliocentric(np.asarray(stars) * self.to_kpc)[0]
            margin_kpc = MARGIN_FRACTION * float(np.quantile(distance, 0.99))
        self.margin = margin_kpc / self.to_kpc

    def completeness(self, x: np.ndarray) -> np.ndarray:
        """:math:`S` at Galactocentric positions (N, 3) in the fit's length unit."""
        distance, lon, lat = self.sky.heliocentric(
            np.asarray(x, dtype=float) * self.to_kpc, self.selection.frame
        )
        return self.selection.completeness(distance, lon, lat)

    def ball(self) -> BallMap | None:
        """The ball of the selection's distance limit about the observer, in
        the fit's length unit, or None without a distance limit."""
        limit = getattr(self.selection, "distance_limit", None)
        if limit is None:
            return None
        radius = float(u.Quantity(limit).to_value(u.kpc)) / self.to_kpc
        return BallMap(self.sky.offset / self.to_kpc, radius)

    @property
    def is_distance_limit(self) -> bool:
        """The selection's :attr:`SelectionFunction.is_distance_limit`."""
        return self.selection.is_distance_limit

    def interior(self, x: np.ndarray) -> np.ndarray:
        """Whether each position lies at least :attr:`margin` inside the selection.

        A position is inside when :math:`S \\geq` :data:`MIN_COMPLETENESS`
        there and at :data:`_N_PROBES` points on a sphere of radius
        :attr:`margin` about it.
        """
        x = np.asarray(x, dtype=float)
        probes = self.margin * sphere_directions(_N_PROBES)
        points = np.concatenate([x[None], x[None] + probes[:, None]], axis=0)
        S = self.completeness(points.reshape(-1, 3)).reshape(len(points), len(x))
        return np.all(S >= MIN_COMPLETENESS, axis=0)

    def grad_log(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\nabla \ln S` at interior positions (N, 3) [1/length].

        Central differences with a step of ``1e-3`` of the margin: exact for
        the footprint and distance limit, which are flat inside, and accurate
        to second order for a smooth completeness.
        """
        x = np.asarray(x, dtype=float)
        h = _STEP_FRACTION * self.margin
        steps = h * np.vstack([np.eye(3), -np.eye(3)])
        points = x[None] + steps[:, None]
        log_S = np.log(self.completeness(points.reshape(-1, 3)).reshape(6, len(x)))
        return ((log_S[:3] - log_S[3:]) / (2 * h)).T

    def describe(self) -> dict[str, Any]:
        """The selection's summary, with the margin [kpc] and the number of
        stars measured outside it."""
        return {
            **self.selection.describe(),
            "margin_kpc": self.margin * self.to_kpc,
            "n_stars_outside": self.n_outside,
        }
