"""Phase-space input: stellar catalogues to Galactocentric Cartesian arrays."""

from __future__ import annotations

__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_GALCEN_FRAME",
    "ERROR_KEYS",
    "CatalogueError",
    "PhaseSpaceData",
    "galcen_frame_from_dict",
    "galcen_frame_to_dict",
    "strip_units",
    "to_phase_space",
]

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import (
    ICRS,
    BaseCoordinateFrame,
    CartesianDifferential,
    Galactocentric,
    RadialDifferential,
    SkyCoord,
    UnitSphericalCosLatDifferential,
    UnitSphericalDifferential,
)
from astropy.table import Table
from gala.dynamics import PhaseSpacePosition
from gala.units import DimensionlessUnitSystem, UnitSystem, galactic

from .tables import (
    DEFAULT_COLUMNS,
    ERROR_KEYS,
    CatalogueError,
    DropLog,
    finite_rows,
    read_table,
    table_to_icrs,
)

DEFAULT_GALCEN_FRAME = Galactocentric(
    # Sgr A*, Reid & Brunthaler (2004, ApJ 616, 872).
    galcen_coord=ICRS(ra=266.4051 * u.deg, dec=-28.936175 * u.deg),
    # GRAVITY Collaboration (2018, A&A 615, L15).
    galcen_distance=8.122 * u.kpc,
    # Drimmel & Poggio (2018, RNAAS 2, 210), with the two references above.
    galcen_v_sun=CartesianDifferential([12.9, 245.6, 7.78] * u.km / u.s),
    # Bennett & Bovy (2019, MNRAS 482, 1417).
    z_sun=20.8 * u.pc,
    roll=0.0 * u.deg,
)
"""The Galactocentric frame used when none is given.

Every parameter is pinned here, so results never change with astropy's
``galactocentric_frame_defaults``. The values are those of astropy's
``"v4.0"`` parameter set: Sgr A* at (ra, dec) = (266.4051°, -28.936175°)
(Reid & Brunthaler 2004), ``galcen_distance`` = 8.122 kpc (GRAVITY
Collaboration 2018), ``galcen_v_sun`` = (12.9, 245.6, 7.78) km/s (Drimmel &
Poggio 2018; GRAVITY Collaboration 2018; Reid & Brunthaler 2004), ``z_sun`` =
20.8 pc (Bennett & Bovy 2019) and ``roll`` = 0°.
"""
_FRAME_KEYS = (
    "galcen_ra_deg",
    "galcen_dec_deg",
    "galcen_distance_kpc",
    "galcen_v_sun_kms",
    "z_sun_pc",
    "roll_deg",
)


@dataclass(frozen=True, eq=False)
class PhaseSpaceData:
    """Galactocentric Cartesian positions and velocities in a unit system.

    Attributes
    ----------
    x : :class:`numpy.ndarray`, shape (N, 3)
        Positions [``units["length"]``].
    v : :class:`numpy.ndarray`, shape (N, 3)
        Velocities [``units["length"] / units["time"]``].
    units : :class:`~gala.units.UnitSystem`
        The unit system of ``x`` and ``v``.
    frame : dict or None
        The Galactocentric frame, as :func:`galcen_frame_to_dict` writes it
        (JSON-able; :attr:`galcen_frame` rebuilds it). None for a
        dimensionless unit system, which has no sky.
    n_dropped : int
        Stars dropped for NaN, inf or masked values (``drop_invalid=True``).
    has_rv : :class:`numpy.ndarray` of bool, shape (N,), or None
        Which stars have a radial velocity, when some do not; their rows of
        ``v`` are NaN. None when every star has one.
    astrometry : dict of str to :class:`numpy.ndarray`, or None
        For a table with ``_error`` columns: each star's measured ``ra``,
        ``dec`` [rad], ``parallax`` [mas], ``pmra``, ``pmdec`` [mas/yr] and
        ``radial_velocity`` [km/s] (NaN where missing), and the standard
        errors ``parallax_error``, ``pmra_error``, ``pmdec_error`` and
        ``radial_velocity_error``, in the same units. Sky positions are
        taken as exact.
    v_zero_rv : :class:`numpy.ndarray`, shape (N, 3), or None
        For the stars without a radial velocity, the velocity their proper
        motions give with a zero heliocentric radial velocity (the true one
        is this plus :math:`v_r` along the line of sight; see
        :mod:`gala_deeppotential.sightlines`); NaN rows for the other
        stars. None when every star has a radial velocity, or when the
        catalogue's velocities are not sky coordinates.
    """

    x: np.ndarray
    v: np.ndarray
    units: UnitSystem
    frame: dict[str, Any] | None
    n_dropped: int = 0
    has_rv: np.ndarray | None = None
    astrometry: dict[str, np.ndarray] | None = None
    v_zero_rv: np.ndarray | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def n_rv(self) -> int:
        """Number of stars with a radial velocity."""
        return len(self) if self.has_rv is None else int(self.has_rv.sum())

    @property
    def w(self) -> np.ndarray:
        """Positions and velocities side by side, shape (N, 6)."""
        return np.concatenate([self.x, self.v], axis=1)

    @property
    def galcen_frame(self) -> Galactocentric:
        """The Galactocentric frame of ``x`` and ``v``."""
        if self.frame is None:
            raise ValueError("dimensionless phase-space data have no sky frame")
        return galcen_frame_from_dict(self.frame)


def galcen_frame_to_dict(frame: Galactocentric) -> dict[str, Any]:
    """Record a Galactocentric frame as plain JSON-able numbers.

    Parameters
    ----------
    frame : :class:`~astropy.coordinates.Galactocentric`
        The frame; any data it holds are ignored.

    Returns
    -------
    params : dict
        ``galcen_ra_deg``, ``galcen_dec_deg`` (ICRS position of the Galactic
        centre [deg]), ``galcen_distance_kpc`` [kpc], ``galcen_v_sun_kms``
        (three Cartesian components of the Sun's velocity [km/s]),
        ``z_sun_pc`` [pc] and ``roll_deg`` [deg].
        :func:`galcen_frame_from_dict` rebuilds the frame.

    Examples
    --------
    >>> galcen_frame_to_dict(DEFAULT_GALCEN_FRAME)["galcen_distance_kpc"]
    8.122
    """
    if not isinstance(frame, Galactocentric):
        raise TypeError(f"expected a Galactocentric frame, got {type(frame).__name__}")
    centre = frame.galcen_coord.transform_to(ICRS())
    # astropy holds the solar velocity as a differential or a representation.
    v_sun = frame.galcen_v_sun.to_cartesian().xyz
    return {
        "galcen_ra_deg": float(centre.ra.to_value(u.deg)),
        "galcen_dec_deg": float(centre.dec.to_value(u.deg)),
        "galcen_distance_kpc": float(frame.galcen_distance.to_value(u.kpc)),
        "galcen_v_sun_kms": v_sun.to_value(u.km / u.s).tolist(),
        "z_sun_pc": float(frame.z_sun.to_value(u.pc)),
        "roll_deg": float(frame.roll.to_value(u.deg)),
    }


def galcen_frame_from_dict(params: Mapping[str, Any]) -> Galactocentric:
    """Rebuild the Galactocentric frame recorded by :func:`galcen_frame_to_dict`.

    Parameters
    ----------
    params : mapping
        Exactly the keys :func:`galcen_frame_to_dict` writes.

    Returns
    -------
    frame : :class:`~astropy.coordinates.Galactocentric`

    Examples
    --------
    >>> params = galcen_frame_to_dict(DEFAULT_GALCEN_FRAME)
    >>> galcen_frame_from_dict(params).z_sun
    <Quantity 20.8 pc>
    """
    missing = [key for key in _FRAME_KEYS if key not in params]
    extra = sorted(set(params) - set(_FRAME_KEYS))
    if missing or extra:
        raise ValueError(
            f"a Galactocentric frame record needs exactly the keys {_FRAME_KEYS}; "
            f"missing {missing}, unexpected {extra}"
        )
    return Galactocentric(
        galcen_coord=ICRS(
            ra=params["galcen_ra_deg"] * u.deg, dec=params["galcen_dec_deg"] * u.deg
        ),
        galcen_distance=params["galcen_distance_kpc"] * u.kpc,
        galcen_v_sun=CartesianDifferential(
            np.asarray(params["galcen_v_sun_kms"], dtype=np.float64) * u.km / u.s
        ),
        z_sun=params["z_sun_pc"] * u.pc,
        roll=params["roll_deg"] * u.deg,
    )


def to_phase_space(
    catalogue: SkyCoord
    | BaseCoordinateFrame
    | PhaseSpacePosition
    | tuple[u.Quantity, u.Quantity]
    | Table
    | str
    | os.PathLike,
    *,
    galcen_frame: Galactocentric | Mapping[str, Any] | None = None,
    units: UnitSystem = galactic,
    columns: Mapping[str, str] | None = None,
    drop_invalid: bool = False,
    min_stars: int = 1,
) -> PhaseSpaceData:
    """Turn a stellar catalogue into Galactocentric Cartesian phase space.

    This is where units leave the pipeline: everything downstream works on
    the plain float arrays returned here, in ``units``.

    Parameters
    ----------
    catalogue : see below
        One of

        - a :class:`~astropy.coordinates.SkyCoord` (or frame) in any frame,
          with distances and full 3D velocities: e.g. ICRS with
          ``pm_ra_cosdec``, ``pm_dec`` and ``radial_velocity``, Galactic, or
          Galactocentric;
        - a :class:`~gala.dynamics.PhaseSpacePosition`, taken to be
          Galactocentric Cartesian already;
        - a pair ``(pos, vel)`` of :class:`~astropy.units.Quantity`
          [length] and [speed], Galactocentric Cartesian, each shaped
          (3, N) (gala's convention) or (N, 3): the axis of length 3 holds
          the components, and a (3, 3) array, which could be either, is
          refused;
        - an astropy :class:`~astropy.table.Table` or
          :class:`~astropy.table.QTable` of ICRS sky coordinates, with units
          on every column (see :data:`DEFAULT_COLUMNS` and ``columns``),
          optionally with standard errors in ``_error`` columns;
        - the path of such a table: ECSV (``.ecsv``), FITS (``.fits``,
          ``.fit``, optionally ``.gz``) or CSV (``.csv``) whose header gives
          each unit in brackets, like ``ra [deg]`` (a CSV written as ECSV
          is read as ECSV).
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict, optional
        The Galactocentric frame, or its record from
        :func:`galcen_frame_to_dict`. By default the catalogue's own frame
        when it is a Galactocentric SkyCoord, else
        :data:`DEFAULT_GALCEN_FRAME`. For a PhaseSpacePosition or a
        ``(pos, vel)`` pair it is only recorded, not applied.
    units : :class:`~gala.units.UnitSystem`
        Unit system of the output; gala's ``galactic`` (kpc, Myr) by default.
        A :class:`~gala.units.DimensionlessUnitSystem` takes dimensionless
        Cartesian input only.
    columns : mapping of str to str, optional
        Column names for a table or file that differ from
        :data:`DEFAULT_COLUMNS`, e.g. ``{"radial_velocity": "rv"}``. A
        ``distance`` column is used when present, else ``parallax``; name
        one of the two to choose.
    drop_invalid : bool
        Drop stars with a NaN, inf or masked value, with a warning, instead
        of raising. The count is in ``n_dropped``. A NaN or masked radial
        velocity is not invalid: the star is kept without one (see
        ``has_rv`` of :class:`PhaseSpaceData`), as long as some stars have
        one.
    min_stars : int
        Fewest stars to accept (after dropping). :func:`~gala_deeppotential.fit`
        asks for the flows' :data:`~gala_deeppotential.df.MIN_STARS`.

    Returns
    -------
    data : :class:`PhaseSpaceData`
        Positions ``x`` and velocities ``v``, each shaped (N, 3), with the
        unit system and the frame that produced them.

    Raises
    ------
    CatalogueError
        For a SkyCoord without distances or velocities, a missing column,
        a column without a unit or in the wrong unit, NaN or inf values, a
        non-positive distance or parallax, or fewer than ``min_stars`` stars.
    TypeError
        For a catalogue of an unsupported type.

    Examples
    --------
    A Plummer sphere at the Galactic centre, seen from the Sun:

    >>> import astropy.units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from gala_deeppotential.mocks import plummer_sample
    >>> w = plummer_sample(1000, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=1)
    >>> galcen = SkyCoord(w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME)
    >>> icrs = galcen.icrs
    >>> data = to_phase_space(icrs)
    >>> data.x.shape, data.v.shape
    ((1000, 3), (1000, 3))
    >>> bool(np.allclose(data.x, w.xyz.to_value(u.kpc).T))
    True
    """
    if not isinstance(units, UnitSystem):
        raise TypeError(f"units must be a gala UnitSystem, got {type(units).__name__}")
    if isinstance(catalogue, (str, os.PathLike)):
        catalogue = read_table(Path(catalogue))
    if columns is not None and not isinstance(catalogue, Table):
        raise TypeError("columns= names table columns; pass it with a Table or file")
    dimensionless = isinstance(units, DimensionlessUnitSystem)
    if dimensionless and galcen_frame is not None:
        raise ValueError("a dimensionless unit system has no Galactocentric frame")

    dropped = DropLog()
    astrometry = None
    if isinstance(catalogue, Table):
        catalogue, astrometry = table_to_icrs(catalogue, columns, drop_invalid, dropped)
    pos, vel, frame, no_rv, vel_zero_rv = _galactocentric(
        catalogue, galcen_frame, dimensionless, drop_invalid, dropped, min_stars
    )
    x = _in_unit(pos, units["length"], "positions", "a length")
    v = _in_unit(vel, units["length"] / units["time"], "velocities", "a speed")
    v_zero_rv = None
    if vel_zero_rv is not None:
        v_zero_rv = vel_zero_rv.to_value(units["length"] / units["time"])
    # Stars without a radial velocity have NaN velocities by design.
    v_checked = np.where(no_rv, 0.0, v)
    components = dict(
        zip(("x", "y", "z", "v_x", "v_y", "v_z"), [*x, *v_checked], strict=True)
    )
    keep = finite_rows(components, drop_invalid, dropped)
    x, v, no_rv = x[:, keep].T.copy(), v[:, keep].T.copy(), no_rv[keep]
    v[no_rv] = np.nan
    if v_zero_rv is not None:
        v_zero_rv = np.where(no_rv[:, None], v_zero_rv[:, keep].T, np.nan)
    if astrometry is not None:
        astrometry = {key: value[keep] for key, value in astrometry.items()}
    _check_size(x.shape[0], dropped.stars, min_stars)

    if dropped.stars:
        detail = ", ".join(f"{k}: {n}" for k, n in dropped.per_value.items())
        warnings.warn(
            f"dropped {dropped.stars} stars with NaN, inf or masked values "
            f"(stars per offending value: {detail}); {x.shape[0]} remain",
            stacklevel=2,
        )
    return PhaseSpaceData(
        x=x,
        v=v,
        units=units,
        frame=None if frame is None else galcen_frame_to_dict(frame),
        n_dropped=dropped.stars,
        has_rv=~no_rv if no_rv.any() else None,
        astrometry=astrometry,
        v_zero_rv=v_zero_rv if no_rv.any() else None,
    )


def _galactocentric(
    catalogue: Any,
    galcen_frame: Galactocentric | Mapping[str, Any] | None,
    dimensionless: bool,
    drop_invalid: bool,
    dropped: DropLog,
    min_stars: int,
) -> tuple[
    u.Quantity, u.Quantity, Galactocentric | None, np.ndarray, u.Quantity | None
]:
    """Galactocentric positions and velocities (3, N) of a catalogue, the frame,
    which stars have no radial velocity, and the velocities (3, N) with their
    missing radial velocities set to zero (None when none is missing)."""
    if isinstance(catalogue, BaseCoordinateFrame):
        catalogue = SkyCoord(catalogue)
    if isinstance(catalogue, SkyCoord):
        if dimensionless:
            raise CatalogueError(
                "sky coordinates carry physical units; pass a physical unit "
                "system such as gala.units.galactic"
            )
        if galcen_frame is None and isinstance(catalogue.frame, Galactocentric):
            galcen_frame = catalogue.frame
        frame = _explicit_frame(galcen_frame)
        coord, no_rv = _checked_skycoord(catalogue, drop_invalid, dropped)
        _check_size(len(coord), dropped.stars, min_stars)
        galcen = coord.transform_to(frame)
        zero_rv = _zero_missing_rv(coord, no_rv)
        vel_zero_rv = None if zero_rv is None else zero_rv.transform_to(frame)
        return (
            galcen.cartesian.xyz,
            galcen.velocity.d_xyz,
            frame,
            no_rv,
            None if vel_zero_rv is None else vel_zero_rv.velocity.d_xyz,
        )
    frame = None if dimensionless else _explicit_frame(galcen_frame)
    if isinstance(catalogue, PhaseSpacePosition):
        pos, vel = catalogue.xyz.reshape(3, -1), catalogue.v_xyz.reshape(3, -1)
        return pos, vel, frame, np.zeros(pos.shape[1], dtype=bool), None
    if isinstance(catalogue, (tuple, list)) and len(catalogue) == 2:
        pos = _components_first(catalogue[0], "pos")
        vel = _components_first(catalogue[1], "vel")
        if pos.shape != vel.shape:
            raise CatalogueError(
                f"pos and vel hold different numbers of stars: {pos.shape[1]} "
                f"and {vel.shape[1]}"
            )
        return pos, vel, frame, np.zeros(pos.shape[1], dtype=bool), None
    raise TypeError(
        f"cannot read a catalogue from {type(catalogue).__name__}; pass a "
        "SkyCoord, a gala PhaseSpacePosition, a (pos, vel) pair of "
        "Quantities, an astropy Table, or an ECSV/FITS/CSV file path"
    )


def _zero_missing_rv(coord: SkyCoord, no_rv: np.ndarray) -> SkyCoord | None:
    """``coord`` with its missing radial velocities set to zero, or None when
    none is missing (or its velocities are not spherical, with no radial
    velocity to set)."""
    diff = coord.data.differentials["s"]
    if not no_rv.any() or "d_distance" not in diff.components:
        return None
    parts = {name: getattr(diff, name) for name in diff.components}
    rv = parts["d_distance"]
    parts["d_distance"] = np.where(no_rv, 0.0, rv.value) * rv.unit
    data = coord.data.without_differentials().with_differentials(
        {"s": type(diff)(**parts)}
    )
    return SkyCoord(coord.frame.realize_frame(data))


def _explicit_frame(
    galcen_frame: Galactocentric | Mapping[str, Any] | None,
) -> Galactocentric:
    """The frame to use, rebuilt from its record so that what is recorded is
    exactly what is applied."""
    if galcen_frame is None:
        return DEFAULT_GALCEN_FRAME
    if isinstance(galcen_frame, Mapping):
        return galcen_frame_from_dict(galcen_frame)
    return galcen_frame_from_dict(galcen_frame_to_dict(galcen_frame))


def _check_size(n_stars: int, n_dropped: int, min_stars: int) -> None:
    if n_stars >= min_stars:
        return
    after = f" after dropping {n_dropped}" if n_dropped else ""
    raise CatalogueError(
        f"only {n_stars} stars{after}, fewer than min_stars={min_stars}: a "
        "distribution function cannot be learned from so few; use a larger "
        "catalogue"
    )


def _in_unit(q: u.Quantity, unit: u.UnitBase, what: str, kind: str) -> np.ndarray:
    """``q`` as a float64 array in ``unit``, or an error that says why not."""
    q = u.Quantity(q)
    try:
        return np.asarray(q.to_value(unit), dtype=np.float64)
    except u.UnitConversionError:
        if q.unit.physical_type == "dimensionless":
            raise CatalogueError(
                f"{what} are dimensionless but the unit system's unit is {unit}; "
                f"attach {kind} unit (e.g. pos * u.kpc), or pass "
                "units=DimensionlessUnitSystem() for a dimensionless model"
            ) from None
        raise CatalogueError(
            f"{what} are in {q.unit}, which is not {kind} in the unit system "
            f"({unit}); give {what} as {kind}"
        ) from None


def _components_first(q: u.Quantity, name: str) -> u.Quantity:
    """A (3, N) or (N, 3) Quantity as (3, N)."""
    q = u.Quantity(q)
    if q.ndim == 2 and q.shape[0] == 3 and q.shape[1] == 3:
        raise CatalogueError(
            f"{name} has shape (3, 3): it is ambiguous whether the components "
            "run along rows or columns (and three stars are too few anyway)"
        )
    if q.ndim == 2 and q.shape[0] == 3:
        return q
    if q.ndim == 2 and q.shape[1] == 3:
        return q.T
    raise CatalogueError(
        f"{name} has shape {q.shape}; expected (3, N) (gala's convention) or (N, 3)"
    )


def _checked_skycoord(
    coord: SkyCoord, drop_invalid: bool, dropped: DropLog
) -> tuple[SkyCoord, np.ndarray]:
    """The stars of ``coord`` with distances and velocities, all finite but
    radial velocities, and which stars have none (NaN)."""
    coord = coord.reshape((1,)) if coord.isscalar else coord.ravel()
    name = type(coord.frame).__name__
    data = coord.data
    if not any(getattr(data, c).unit.is_equivalent(u.kpc) for c in data.components):
        raise CatalogueError(
            f"the {name} SkyCoord has no distances; create it with distance= "
            "(e.g. distance=Distance(parallax=plx))"
        )
    diff = data.differentials.get("s")
    if diff is None:
        raise CatalogueError(
            f"the {name} SkyCoord has no velocities; create it with proper "
            "motions and radial velocities (e.g. pm_ra_cosdec=, pm_dec=, "
            "radial_velocity=)"
        )
    if isinstance(diff, (UnitSphericalDifferential, UnitSphericalCosLatDifferential)):
        raise CatalogueError(
            f"the {name} SkyCoord has proper motions but no radial velocities; "
            "Deep Potential needs full 3D velocities: pass radial_velocity= "
            "(keep only the stars that have one)"
        )
    if isinstance(diff, RadialDifferential):
        raise CatalogueError(
            f"the {name} SkyCoord has radial velocities but no proper motions; "
            "Deep Potential needs full 3D velocities"
        )
    names = [
        *coord.frame.get_representation_component_names(),
        *coord.frame.get_representation_component_names("s"),
    ]
    values = {key: np.asarray(getattr(coord, key).value) for key in names}
    no_rv = np.zeros(len(coord), dtype=bool)
    if "radial_velocity" in values:
        no_rv = ~np.isfinite(values.pop("radial_velocity"))
        if no_rv.all():
            raise CatalogueError(
                f"no star of the {name} SkyCoord has a finite radial velocity: "
                "the velocity distribution needs some stars with all three "
                "velocity components"
            )
    keep = finite_rows(values, drop_invalid, dropped)
    coord, no_rv = coord[keep], no_rv[keep]
    distance = getattr(coord.data, "distance", None)
    if distance is not None and np.any(distance.value <= 0):
        raise CatalogueError(
            f"{int(np.sum(distance.value <= 0))} stars have a distance <= 0; "
            "remove them (a negative distance usually comes from inverting a "
            "negative parallax)"
        )
    return coord, no_rv


def strip_units(value: Any) -> np.ndarray:
    """The numbers of a :class:`~astropy.units.Quantity` (or of an array), float64."""
    return np.asarray(getattr(value, "value", value), dtype=np.float64)
