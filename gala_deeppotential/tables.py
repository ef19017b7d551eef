"""Catalogue tables and files: columns, units, missing radial velocities, errors."""

from __future__ import annotations

__all__ = [
    "COLUMN_UNITS",
    "DEFAULT_COLUMNS",
    "ERROR_KEYS",
    "CatalogueError",
    "DropLog",
    "finite_rows",
    "read_table",
    "table_to_icrs",
]

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

DEFAULT_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "ra": "ra",
        "dec": "dec",
        "distance": "distance",
        "parallax": "parallax",
        "pmra": "pmra",
        "pmdec": "pmdec",
        "radial_velocity": "radial_velocity",
        "parallax_error": "parallax_error",
        "pmra_error": "pmra_error",
        "pmdec_error": "pmdec_error",
        "radial_velocity_error": "radial_velocity_error",
    }
)
"""Column names :func:`to_phase_space` reads from a table or file.

Keys are the quantities, values the column names; override any of them with
``columns=``. Coordinates are ICRS, and ``pmra`` is
:math:`\\mu_{\\alpha*} = \\mu_\\alpha \\cos\\delta`, as in Gaia (the Gaia
archive's names are the defaults). The ``_error`` columns, standard errors,
are optional: with them the fit can deconvolve the measurement errors.
"""

#: The measured quantities whose standard errors a catalogue may give.
ERROR_KEYS = ("parallax", "pmra", "pmdec", "radial_velocity")

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
for _key in ERROR_KEYS:
    _unit, _kind, _meaning = _COLUMN_KINDS[_key]
    _COLUMN_KINDS[f"{_key}_error"] = (_unit, _kind, f"standard error of the {_meaning}")
COLUMN_UNITS: Mapping[str, u.UnitBase] = MappingProxyType(
    {key: kind[0] for key, kind in _COLUMN_KINDS.items()}
)
"""The unit each quantity of :data:`DEFAULT_COLUMNS` is read in, and written
in by :func:`~gala_deeppotential.mocks.mock_gaia_catalogue`."""
# Units of the astrometry record (those of sky.SkyFrame).
_ASTROMETRY_UNITS = {
    "ra": u.rad,
    "dec": u.rad,
    "parallax": u.mas,
    "pmra": u.mas / u.yr,
    "pmdec": u.mas / u.yr,
    "radial_velocity": u.km / u.s,
}
_CSV_HEADER = re.compile(r"^(?P<name>.*?)\s*\[(?P<unit>[^\[\]]*)\]$")


class CatalogueError(ValueError):
    """A catalogue that cannot become phase space; the message says why and the fix."""


@dataclass
class DropLog:
    """Stars dropped so far, in all and per offending value (a star with two
    bad values counts once in ``stars``, and under both values)."""

    stars: int = 0
    per_value: dict[str, int] = field(default_factory=dict)


def finite_rows(
    values: Mapping[str, np.ndarray], drop_invalid: bool, dropped: DropLog
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


def read_table(path: Path) -> Table:
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


def table_to_icrs(
    table: Table,
    columns: Mapping[str, str] | None,
    drop_invalid: bool,
    dropped: DropLog,
) -> tuple[SkyCoord, dict[str, np.ndarray] | None]:
    """ICRS SkyCoord of the valid rows of a table with unit-ful columns, and
    their astrometry with errors if the table has ``_error`` columns.

    A missing (NaN or masked) radial velocity is not invalid; its SkyCoord
    entry is NaN."""
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
    error_keys = _error_columns(table, names, radial)
    values = {key: _column(table, key, names[key]) for key in keys + error_keys}
    keep = finite_rows(_checked_values(values, names), drop_invalid, dropped)
    values = {key: q[keep] for key, q in values.items()}
    for key in error_keys:
        errors = values[key].value
        has_value = np.isfinite(values[key[: -len("_error")]].value)
        if np.any(errors[has_value] <= 0):
            raise CatalogueError(
                f"column '{names[key]}' has {int(np.sum(errors[has_value] <= 0))} "
                "standard errors <= 0; errors must be positive (drop the column "
                "to treat the measurements as exact)"
            )
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
    coord = SkyCoord(
        ra=values["ra"],
        dec=values["dec"],
        distance=distance,
        pm_ra_cosdec=values["pmra"],
        pm_dec=values["pmdec"],
        radial_velocity=values["radial_velocity"],
        frame="icrs",
    )
    if not error_keys:
        return coord, None
    astrometry = {
        key: values[key].to_value(unit) for key, unit in _ASTROMETRY_UNITS.items()
    }
    for key in error_keys:
        unit = _ASTROMETRY_UNITS[key[: -len("_error")]]
        astrometry[key] = values[key].to_value(unit)
    return coord, astrometry


def _checked_values(
    values: Mapping[str, u.Quantity], names: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """The columns that must be finite for a star to be valid, by column name.

    A missing radial velocity is allowed, and needs no error; a radial
    velocity needs its error. Some star must have a radial velocity.
    """
    rv = values["radial_velocity"].value
    if not np.isfinite(rv).any():
        raise CatalogueError(
            f"no star has a finite radial velocity in column "
            f"'{names['radial_velocity']}': the velocity distribution needs some "
            "stars with all three velocity components"
        )
    checked = {
        names[key]: q.value
        for key, q in values.items()
        if key not in ("radial_velocity", "radial_velocity_error")
    }
    if "radial_velocity_error" in values:
        rv_error = values["radial_velocity_error"].value
        checked[names["radial_velocity_error"]] = np.where(
            np.isfinite(rv), rv_error, 1.0
        )
    return checked


def _error_columns(table: Table, names: Mapping[str, str], radial: str) -> list[str]:
    """The ``_error`` keys to read: all four, or none; refuse a partial set."""
    keys = [f"{key}_error" for key in ERROR_KEYS]
    present = [key for key in keys if names[key] in table.colnames]
    if not present:
        return []
    missing = [names[key] for key in keys if key not in present]
    if missing:
        raise CatalogueError(
            f"the table has error columns {[names[k] for k in present]} but not "
            f"{missing}: measurement errors are deconvolved only with all four "
            "(parallax, both proper motions, radial velocity); add the missing "
            "columns (name them with columns=), or drop the error columns to "
            "treat the measurements as exact"
        )
    if radial != "parallax":
        raise CatalogueError(
            "the table has error columns but gives distances, not parallaxes: "
            "the deconvolution works with parallax and parallax_error; pass the "
            "parallax column, or drop the error columns"
        )
    return keys


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
