"""Phase-space input: stellar catalogues to Galactocentric Cartesian arrays."""

from __future__ import annotations

__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_GALCEN_FRAME",
    "CatalogueError",
    "PhaseSpaceData",
    "galcen_frame_from_dict",
    "galcen_frame_to_dict",
    "strip_units",
    "to_phase_space",
]

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
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

DEFAULT_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "ra": "ra",
        "dec": "dec",
        "distance": "distance",
        "parallax": "parallax",
        "pmra": "pmra",
        "pmdec": "pmdec",
        "radial_velocity": "radial_velocity",
    }
)
"""Column names :func:`to_phase_space` reads from a table or file.

Keys are the quantities, values the column names; override any of them with
``columns=``. Coordinates are ICRS, and ``pmra`` is
:math:`\\mu_{\\alpha*} = \\mu_\\alpha \\cos\\delta`, as in Gaia.
"""

# For each quantity: the unit it must convert to, what that is, what the
# quantity is (for error messages).
_COLUMN_KINDS: dict[str, tuple[u.UnitBase, str, str]] = {
    "ra": (u.deg, "an angle", "right ascension"),
    "dec": (u.deg, "an angle", "declination"),
    "distance": (u.kpc, "a length", "heliocentric distance"),
    "parallax": (u.mas, "an angle", "parallax"),
    "pmra": (u.mas / u.yr, "an angular speed", "proper motion in RA * cos(dec)"),
    "pmdec": (u.mas / u.yr, "an angular speed", "proper motion in Dec"),
    "radial_velocity": (u.km / u.s, "a speed", "heliocentric radial velocity"),
}
_FRAME_KEYS = (
    "galcen_ra_deg",
    "galcen_dec_deg",
    "galcen_distance_kpc",
    "galcen_v_sun_kms",
    "z_sun_pc",
    "roll_deg",
)
_CSV_HEADER = re.compile(r"^(?P<name>.*?)\s*\[(?P<unit>[^\[\]]*)\]$")


class CatalogueError(ValueError):
    """A catalogue that cannot become phase space; the message says why and the fix."""


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
    """

    x: np.ndarray
    v: np.ndarray
    units: UnitSystem
    frame: dict[str, Any] | None
    n_dropped: int = 0

    def __len__(self) -> int:
        return self.x.shape[0]

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
          on every column (see :data:`DEFAULT_COLUMNS` and ``columns``);
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
        of raising. The count is in ``n_dropped``.
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
        catalogue = _read_table(Path(catalogue))
    if columns is not None and not isinstance(catalogue, Table):
        raise TypeError("columns= names table columns; pass it with a Table or file")
    dimensionless = isinstance(units, DimensionlessUnitSystem)
    if dimensionless and galcen_frame is not None:
        raise ValueError("a dimensionless unit system has no Galactocentric frame")

    dropped = _DropLog()
    if isinstance(catalogue, Table):
        catalogue = _table_to_icrs(catalogue, columns, drop_invalid, dropped)
    pos, vel, frame = _galactocentric(
        catalogue, galcen_frame, dimensionless, drop_invalid, dropped, min_stars
    )
    x = _in_unit(pos, units["length"], "positions", "a length")
    v = _in_unit(vel, units["length"] / units["time"], "velocities", "a speed")
    components = dict(zip(("x", "y", "z", "v_x", "v_y", "v_z"), [*x, *v], strict=True))
    keep = _finite_rows(components, drop_invalid, dropped)
    x, v = x[:, keep].T.copy(), v[:, keep].T.copy()
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
    )


def _galactocentric(
    catalogue: Any,
    galcen_frame: Galactocentric | Mapping[str, Any] | None,
    dimensionless: bool,
    drop_invalid: bool,
    dropped: _DropLog,
    min_stars: int,
) -> tuple[u.Quantity, u.Quantity, Galactocentric | None]:
    """Galactocentric positions and velocities (3, N) of a catalogue, and the frame."""
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
        coord = _checked_skycoord(catalogue, drop_invalid, dropped)
        _check_size(len(coord), dropped.stars, min_stars)
        galcen = coord.transform_to(frame)
        return galcen.cartesian.xyz, galcen.velocity.d_xyz, frame
    frame = None if dimensionless else _explicit_frame(galcen_frame)
    if isinstance(catalogue, PhaseSpacePosition):
        pos, vel = catalogue.xyz.reshape(3, -1), catalogue.v_xyz.reshape(3, -1)
        return pos, vel, frame
    if isinstance(catalogue, (tuple, list)) and len(catalogue) == 2:
        pos = _components_first(catalogue[0], "pos")
        vel = _components_first(catalogue[1], "vel")
        if pos.shape != vel.shape:
            raise CatalogueError(
                f"pos and vel hold different numbers of stars: {pos.shape[1]} "
                f"and {vel.shape[1]}"
            )
        return pos, vel, frame
    raise TypeError(
        f"cannot read a catalogue from {type(catalogue).__name__}; pass a "
        "SkyCoord, a gala PhaseSpacePosition, a (pos, vel) pair of "
        "Quantities, an astropy Table, or an ECSV/FITS/CSV file path"
    )


@dataclass
class _DropLog:
    """Stars dropped so far, in all and per offending value (a star with two
    bad values counts once in ``stars``, and under both values)."""

    stars: int = 0
    per_value: dict[str, int] = field(default_factory=dict)


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


def _finite_rows(
    values: Mapping[str, np.ndarray], drop_invalid: bool, dropped: _DropLog
) -> np.ndarray:
    """Mask of stars whose every value is finite; raise, or count the rest."""
    bad = {name: ~np.isfinite(value) for name, value in values.items()}
    keep = ~np.logical_or.reduce(list(bad.values()))
    if keep.all():
        return keep
    counts = {name: int(mask.sum()) for name, mask in bad.items() if mask.any()}
    if not drop_invalid:
        first = np.flatnonzero(~keep)[:5].tolist()
        detail = ", ".join(f"'{name}': {count}" for name, count in counts.items())
        raise CatalogueError(
            f"{int((~keep).sum())} stars have NaN, inf or masked values "
            f"(stars per value: {detail}; first rows {first}); clean the "
            "catalogue, or pass drop_invalid=True to drop those stars"
        )
    dropped.stars += int((~keep).sum())
    for name, count in counts.items():
        dropped.per_value[name] = dropped.per_value.get(name, 0) + count
    return keep


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
    coord: SkyCoord, drop_invalid: bool, dropped: _DropLog
) -> SkyCoord:
    """The stars of ``coord`` with distances and full velocities, all finite."""
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
    coord = coord[_finite_rows(values, drop_invalid, dropped)]
    distance = getattr(coord.data, "distance", None)
    if distance is not None and np.any(distance.value <= 0):
        raise CatalogueError(
            f"{int(np.sum(distance.value <= 0))} stars have a distance <= 0; "
            "remove them (a negative distance usually comes from inverting a "
            "negative parallax)"
        )
    return coord


def _read_table(path: Path) -> Table:
    """Read an ECSV, FITS or CSV (units in brackets in the header) catalogue."""
    if not path.is_file():
        raise FileNotFoundError(f"no catalogue file at {path}")
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix == ".ecsv":
        return Table.read(path, format="ascii.ecsv")
    if suffix in (".fits", ".fit"):
        return Table.read(path, format="fits")
    if suffix == ".csv":
        with open(path, encoding="utf-8") as f:
            if f.readline().startswith("# %ECSV"):
                return Table.read(path, format="ascii.ecsv")
        table = Table.read(path, format="ascii.csv")
        for colname in table.colnames:
            match = _CSV_HEADER.match(colname)
            if match is None:
                continue
            try:
                unit = u.Unit(match["unit"])
            except ValueError:
                raise CatalogueError(
                    f"cannot parse the unit '{match['unit']}' in the CSV header "
                    f"'{colname}' of {path}; write an astropy unit string"
                ) from None
            table.rename_column(colname, match["name"])
            table[match["name"]].unit = unit
        return table
    raise CatalogueError(
        f"cannot tell the format of {path.name}: use a .ecsv, .fits or .csv "
        "file, or read it with astropy.table.Table.read and pass the table"
    )


def _table_to_icrs(
    table: Table,
    columns: Mapping[str, str] | None,
    drop_invalid: bool,
    dropped: _DropLog,
) -> SkyCoord:
    """ICRS SkyCoord of the finite rows of a table with unit-ful columns."""
    if len(table) == 0:
        raise CatalogueError("the catalogue table holds no stars (no rows)")
    names = dict(DEFAULT_COLUMNS)
    chosen = dict(columns or {})
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ValueError(
            f"unknown keys {unknown} in columns=; the keys are {sorted(names)}"
        )
    names.update(chosen)
    if "distance" in chosen and "parallax" in chosen:
        raise ValueError("columns= names both a distance and a parallax; name one")
    if "distance" in chosen or "parallax" in chosen:
        radial = "distance" if "distance" in chosen else "parallax"
    elif names["distance"] in table.colnames or names["parallax"] not in table.colnames:
        radial = "distance"
    else:
        radial = "parallax"
    keys = ["ra", "dec", radial, "pmra", "pmdec", "radial_velocity"]
    values = {key: _column(table, key, names[key]) for key in keys}
    keep = _finite_rows(
        {names[key]: q.value for key, q in values.items()}, drop_invalid, dropped
    )
    values = {key: q[keep] for key, q in values.items()}
    non_positive = int(np.sum(values[radial].value <= 0))
    if non_positive:
        raise CatalogueError(
            f"{non_positive} stars have {radial} <= 0 in column "
            f"'{names[radial]}'; remove them before passing the catalogue "
            "(for parallaxes, inverting a noisy one is biased anyway: keep "
            "stars with a high parallax_over_error, or pass distances)"
        )
    distance = (
        values["distance"]
        if radial == "distance"
        else values["parallax"].to(u.kpc, u.parallax())
    )
    return SkyCoord(
        ra=values["ra"],
        dec=values["dec"],
        distance=distance,
        pm_ra_cosdec=values["pmra"],
        pm_dec=values["pmdec"],
        radial_velocity=values["radial_velocity"],
        frame="icrs",
    )


def _column(table: Table, key: str, name: str) -> u.Quantity:
    """Column ``name`` as a float Quantity, masked entries NaN, or an error."""
    unit, kind, meaning = _COLUMN_KINDS[key]
    if name not in table.colnames:
        if key == "radial_velocity":
            raise CatalogueError(
                f"no radial velocity column '{name}' (the table has "
                f"{table.colnames}); Deep Potential needs full 3D velocities: "
                "keep only stars with radial velocities, and name the column "
                "with columns={'radial_velocity': ...} if it is called otherwise"
            )
        what = "distance or parallax" if key in ("distance", "parallax") else key
        raise CatalogueError(
            f"no {what} column '{name}' ({meaning}) in the table (it has "
            f"{table.colnames}); name it with columns={{'{key}': ...}}"
        )
    col = table[name]
    if col.dtype.kind not in "iuf":
        raise CatalogueError(
            f"column '{name}' ({meaning}) holds {col.dtype}, not numbers"
        )
    col_unit = getattr(col, "unit", None)
    if col_unit is None or col_unit == u.dimensionless_unscaled:
        raise CatalogueError(
            f"column '{name}' ({meaning}) has no unit; it must be {kind}: set "
            f"one, e.g. table['{name}'].unit = '{unit}' (in a CSV header write "
            f"'{name} [{unit}]')"
        )
    if not col_unit.is_equivalent(unit):
        raise CatalogueError(
            f"column '{name}' ({meaning}) is in {col_unit}, which is not {kind}; "
            f"give it in e.g. {unit}"
        )
    raw = getattr(col, "unmasked", col)
    values = np.array(getattr(raw, "value", raw), dtype=np.float64)
    values[np.ma.getmaskarray(col)] = np.nan
    return values * col_unit


def strip_units(value: Any) -> np.ndarray:
    """The numbers of a :class:`~astropy.units.Quantity` (or of an array), float64."""
    return np.asarray(getattr(value, "value", value), dtype=np.float64)
