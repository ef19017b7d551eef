"""Tests for phasespace: catalogue input (to_phase_space) and frame records."""

from __future__ import annotations

import json
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import (
    ICRS,
    Distance,
    Galactocentric,
    SkyCoord,
    SphericalRepresentation,
    galactocentric_frame_defaults,
)
from astropy.table import MaskedColumn, QTable, Table
from gala.dynamics import PhaseSpacePosition
from gala.units import DimensionlessUnitSystem, UnitSystem, galactic

from gala_deeppotential.df import MIN_STARS
from gala_deeppotential.mocks import plummer_sample
from gala_deeppotential.phasespace import (
    DEFAULT_GALCEN_FRAME,
    CatalogueError,
    galcen_frame_from_dict,
    galcen_frame_to_dict,
    to_phase_space,
)

# ---------------------------------------------------------------------------
# Catalogue input
# ---------------------------------------------------------------------------

N_STARS = 1200
KPC_MYR = u.kpc / u.Myr
# Measured: every input form reproduces the truth to ~1e-15 relative (astropy's
# frame transforms are exact to rounding); 1e-12 leaves room for platforms.
RTOL = 1e-12
# A frame unlike the default in every parameter.
OTHER_FRAME = Galactocentric(
    galcen_coord=SkyCoord(l=0.01 * u.deg, b=-0.05 * u.deg, frame="galactic"),
    galcen_distance=8.275 * u.kpc,
    galcen_v_sun=[11.1, 250.0, 7.25] * u.km / u.s,
    z_sun=0.0 * u.pc,
    roll=0.5 * u.deg,
)


def observe(w: PhaseSpacePosition, frame: Galactocentric) -> SkyCoord:
    """Galactocentric Cartesian ``w`` placed in ``frame``, as a SkyCoord."""
    return SkyCoord(w.pos.with_differentials(w.vel), frame=frame)


_ICRS_PARTS = ("ra", "dec", "distance", "pm_ra_cosdec", "pm_dec", "radial_velocity")


def icrs_like(icrs: SkyCoord, **replace) -> SkyCoord:
    """``icrs`` rebuilt with some components replaced, or dropped with ``None``."""
    parts = {name: getattr(icrs, name) for name in _ICRS_PARTS}
    parts.update(replace)
    return SkyCoord(**{k: v for k, v in parts.items() if v is not None})


@pytest.fixture(scope="module")
def truth() -> PhaseSpacePosition:
    """A Plummer sphere (m = 1e11 Msun, b = 3 kpc) at the Galactic centre."""
    return plummer_sample(
        N_STARS, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=42
    )


@pytest.fixture(scope="module")
def icrs(truth) -> SkyCoord:
    """The sphere as the Sun sees it."""
    return observe(truth, DEFAULT_GALCEN_FRAME).icrs


@pytest.fixture
def sky_table(icrs) -> QTable:
    return QTable(
        {
            "ra": icrs.ra.to(u.deg),
            "dec": icrs.dec.to(u.deg),
            "distance": icrs.distance.to(u.kpc),
            "pmra": icrs.pm_ra_cosdec.to(u.mas / u.yr),
            "pmdec": icrs.pm_dec.to(u.mas / u.yr),
            "radial_velocity": icrs.radial_velocity.to(u.km / u.s),
        }
    )


def assert_matches(data, truth, keep=slice(None), length=u.kpc, speed=KPC_MYR):
    x_true = truth.xyz.to_value(length).T[keep]
    v_true = truth.v_xyz.to_value(speed).T[keep]
    assert data.x.shape == x_true.shape and data.v.shape == v_true.shape
    scale_x, scale_v = np.abs(x_true).max(), np.abs(v_true).max()
    np.testing.assert_allclose(data.x, x_true, rtol=0, atol=RTOL * scale_x)
    np.testing.assert_allclose(data.v, v_true, rtol=0, atol=RTOL * scale_v)


def write_csv_with_unit_header(table: QTable, path) -> None:
    plain = Table()
    for name in table.colnames:
        plain[f"{name} [{table[name].unit}]"] = table[name].value
    plain.write(path, format="ascii.csv")


def _form(kind, truth, icrs, sky_table, tmp_path):
    """The Plummer sample in one of the input forms to_phase_space accepts."""
    if kind == "icrs":
        return icrs
    if kind == "galactic":
        return icrs.galactic
    if kind == "icrs_frame":
        return icrs.frame
    if kind == "galactocentric":
        return icrs.transform_to(DEFAULT_GALCEN_FRAME)
    if kind == "phase_space_position":
        return truth
    if kind == "pair_3n":
        return (truth.xyz.to(u.pc), truth.v_xyz.to(u.km / u.s))
    if kind == "pair_n3":
        return [truth.xyz.T, truth.v_xyz.T]
    if kind == "qtable":
        return sky_table
    if kind == "table":
        return Table(sky_table)
    if kind == "parallax":
        sky_table["parallax"] = sky_table["distance"].to(u.mas, u.parallax())
        del sky_table["distance"]
        return sky_table
    if kind == "csv":
        write_csv_with_unit_header(sky_table, tmp_path / "stars.csv")
        return tmp_path / "stars.csv"
    path = tmp_path / f"stars.{kind}"
    sky_table.write(path, format="ascii.ecsv" if kind == "ecsv" else "fits")
    return str(path)


FORMS = [
    "icrs",
    "galactic",
    "icrs_frame",
    "galactocentric",
    "phase_space_position",
    "pair_3n",
    "pair_n3",
    "qtable",
    "table",
    "parallax",
    "ecsv",
    "fits",
    "csv",
]


@pytest.mark.parametrize("kind", FORMS)
def test_every_input_form_gives_the_truth(kind, truth, icrs, sky_table, tmp_path):
    catalogue = _form(kind, truth, icrs, sky_table, tmp_path)
    data = to_phase_space(catalogue)
    assert_matches(data, truth)
    assert data.x.dtype == np.float64 and data.x.flags.c_contiguous
    assert data.units is galactic
    assert data.frame == galcen_frame_to_dict(DEFAULT_GALCEN_FRAME)
    assert data.n_dropped == 0
    assert len(data) == N_STARS
    np.testing.assert_array_equal(data.w, np.concatenate([data.x, data.v], axis=1))


def test_output_does_not_share_memory_with_input(truth):
    pos, vel = truth.xyz.T.copy(), truth.v_xyz.T.copy()
    data = to_phase_space((pos, vel))
    assert not np.shares_memory(data.x, pos) and not np.shares_memory(data.v, vel)


def test_default_frame_is_pinned_to_named_values():
    assert galcen_frame_to_dict(DEFAULT_GALCEN_FRAME) == {
        "galcen_ra_deg": 266.4051,
        "galcen_dec_deg": -28.936175,
        "galcen_distance_kpc": 8.122,
        "galcen_v_sun_kms": [12.9, 245.6, 7.78],
        "z_sun_pc": 20.8,
        "roll_deg": 0.0,
    }


def test_astropy_default_frame_setting_changes_nothing(icrs):
    expected = to_phase_space(icrs)
    with galactocentric_frame_defaults.set("pre-v4.0"):
        data = to_phase_space(icrs)
    np.testing.assert_array_equal(data.x, expected.x)
    np.testing.assert_array_equal(data.v, expected.v)
    assert data.frame == expected.frame


def test_frame_record_round_trips_through_json():
    params = galcen_frame_to_dict(OTHER_FRAME)
    rebuilt = galcen_frame_from_dict(json.loads(json.dumps(params)))
    assert galcen_frame_to_dict(rebuilt) == params
    assert rebuilt.galcen_distance == 8.275 * u.kpc
    assert rebuilt.roll == 0.5 * u.deg
    centre = SkyCoord(OTHER_FRAME.galcen_coord)
    assert rebuilt.galcen_coord.separation(centre) < 1e-9 * u.arcsec


@pytest.mark.parametrize(
    "params",
    [
        {"galcen_distance_kpc": 8.0},
        {**galcen_frame_to_dict(DEFAULT_GALCEN_FRAME), "extra": 1},
    ],
)
def test_frame_record_needs_exactly_its_keys(params):
    with pytest.raises(ValueError, match="needs exactly the keys"):
        galcen_frame_from_dict(params)


@pytest.mark.parametrize("frame", [None, OTHER_FRAME])
def test_icrs_to_galactocentric_and_back(icrs, frame):
    data = to_phase_space(icrs, galcen_frame=frame)
    x, v = data.x.T * u.kpc, data.v.T * KPC_MYR
    back = SkyCoord(
        x=x[0], y=x[1], z=x[2], v_x=v[0], v_y=v[1], v_z=v[2], frame=data.galcen_frame
    ).icrs
    assert back.separation(icrs).max() < 1e-8 * u.arcsec
    np.testing.assert_allclose(back.distance, icrs.distance, rtol=1e-12)
    for name, unit in [
        ("pm_ra_cosdec", u.mas / u.yr),
        ("pm_dec", u.mas / u.yr),
        ("radial_velocity", u.km / u.s),
    ]:
        got, want = getattr(back, name).to_value(unit), getattr(icrs, name).value
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_explicit_frame_is_applied_and_recorded(truth):
    seen = observe(truth, OTHER_FRAME).icrs
    data = to_phase_space(seen, galcen_frame=OTHER_FRAME)
    assert_matches(data, truth)
    assert data.frame == galcen_frame_to_dict(OTHER_FRAME)
    # The record itself is accepted as the frame.
    again = to_phase_space(seen, galcen_frame=data.frame)
    np.testing.assert_array_equal(again.x, data.x)
    # The same stars in the default frame sit elsewhere.
    assert np.abs(to_phase_space(seen).x - data.x).max() > 0.1


def test_galactocentric_skycoord_keeps_its_own_frame(truth):
    coord = observe(truth, OTHER_FRAME)
    data = to_phase_space(coord)
    assert_matches(data, truth)
    assert data.frame == galcen_frame_to_dict(OTHER_FRAME)
    moved = to_phase_space(coord, galcen_frame=DEFAULT_GALCEN_FRAME)
    assert moved.frame == galcen_frame_to_dict(DEFAULT_GALCEN_FRAME)
    assert np.abs(moved.x - data.x).max() > 0.1


def test_other_unit_systems(icrs, truth):
    units = UnitSystem(u.pc, u.yr, u.Msun, u.radian)
    data = to_phase_space(icrs, units=units)
    assert_matches(data, truth, length=u.pc, speed=u.pc / u.yr)
    # 1 kpc/Myr = 1000 pc / 1e6 yr.
    ref = to_phase_space(icrs)
    np.testing.assert_allclose(data.x, 1e3 * ref.x, rtol=1e-14)
    np.testing.assert_allclose(data.v, 1e-3 * ref.v, rtol=1e-14)


def test_velocities_are_length_over_time_not_preferred_speed(icrs, truth):
    units = UnitSystem(u.kpc, u.Myr, u.Msun, u.radian, u.km / u.s)
    data = to_phase_space(icrs, units=units)
    assert_matches(data, truth)


def test_dimensionless_unit_system():
    w = plummer_sample(N_STARS, seed=3)
    data = to_phase_space(w, units=DimensionlessUnitSystem())
    np.testing.assert_array_equal(data.x, w.xyz.value.T)
    np.testing.assert_array_equal(data.v, w.v_xyz.value.T)
    assert data.frame is None
    with pytest.raises(ValueError, match="no sky frame"):
        _ = data.galcen_frame


def assert_matches_without_rv(data, truth, no_rv, keep=slice(None)):
    """Positions all match; velocities match where there is a radial velocity."""
    np.testing.assert_array_equal(data.has_rv, ~no_rv)
    assert np.isnan(data.v[no_rv]).all()
    x_true = truth.xyz.to_value(u.kpc).T[keep]
    v_true = truth.v_xyz.to_value(KPC_MYR).T[keep]
    np.testing.assert_allclose(data.x, x_true, rtol=0, atol=RTOL * np.abs(x_true).max())
    np.testing.assert_allclose(
        data.v[~no_rv], v_true[~no_rv], rtol=0, atol=RTOL * np.abs(v_true).max()
    )


def test_drop_invalid_reports_what_it_dropped(sky_table, truth):
    sky_table["radial_velocity"][[3, 7]] = np.nan
    sky_table["pmra"][7] = np.inf
    sky_table["distance"][11] = np.nan
    # Star 3 only lacks a radial velocity: it is kept, without one.
    expected = r"dropped 2 stars .*distance: 1, pmra: 1\)"
    with pytest.warns(UserWarning, match=expected):
        data = to_phase_space(sky_table, drop_invalid=True)
    assert data.n_dropped == 2
    keep = np.ones(N_STARS, dtype=bool)
    keep[[7, 11]] = False
    no_rv = np.zeros(N_STARS - 2, dtype=bool)
    no_rv[3] = True
    assert_matches_without_rv(data, truth, no_rv, keep=keep)
    assert data.n_rv == N_STARS - 3


def test_masked_radial_velocities_are_missing_not_invalid(sky_table, truth):
    table = Table(sky_table)
    rv = table["radial_velocity"]
    mask = np.zeros(N_STARS, dtype=bool)
    mask[:5] = True
    table["radial_velocity"] = MaskedColumn(rv, mask=mask, unit=rv.unit)
    data = to_phase_space(table)
    assert data.n_dropped == 0
    assert_matches_without_rv(data, truth, mask)


def test_complete_catalogue_has_no_rv_mask(sky_table, truth):
    data = to_phase_space(sky_table)
    assert data.has_rv is None and data.n_rv == N_STARS
    assert data.astrometry is None


def test_no_radial_velocity_at_all_is_refused(sky_table, icrs):
    sky_table["radial_velocity"][:] = np.nan
    with pytest.raises(CatalogueError, match="no star has a finite radial velocity"):
        to_phase_space(sky_table)
    coord = icrs_like(icrs, radial_velocity=np.full(len(icrs), np.nan) * u.km / u.s)
    with pytest.raises(CatalogueError, match="finite radial velocity"):
        to_phase_space(coord)


@pytest.mark.parametrize("kind", ["icrs", "pair_n3"])
def test_drop_invalid_other_forms(kind, icrs, truth, tmp_path):
    if kind == "icrs":
        pm = icrs.pm_dec.copy()
        pm[0] = np.nan
        catalogue = icrs_like(icrs, pm_dec=pm)
    else:
        pos = truth.xyz.T.copy()
        pos[0, 1] = np.nan
        catalogue = (pos, truth.v_xyz.T)
    with pytest.raises(CatalogueError, match="drop_invalid=True"):
        to_phase_space(catalogue)
    with pytest.warns(UserWarning, match="dropped 1 stars"):
        data = to_phase_space(catalogue, drop_invalid=True)
    assert data.n_dropped == 1
    assert_matches(data, truth, keep=slice(1, None))


def test_skycoord_with_some_radial_velocities_missing(icrs, truth):
    rv = icrs.radial_velocity.copy()
    rv[[0, 5]] = np.nan
    coord = icrs_like(icrs, radial_velocity=rv)
    data = to_phase_space(coord)
    no_rv = np.zeros(N_STARS, dtype=bool)
    no_rv[[0, 5]] = True
    assert_matches_without_rv(data, truth, no_rv)


def gaia_table(icrs) -> QTable:
    """The catalogue with parallaxes and Gaia-style error columns."""
    table = QTable(
        {
            "ra": icrs.ra.to(u.deg),
            "dec": icrs.dec.to(u.deg),
            "parallax": icrs.distance.to(u.mas, u.parallax()),
            "pmra": icrs.pm_ra_cosdec.to(u.mas / u.yr),
            "pmdec": icrs.pm_dec.to(u.mas / u.yr),
            "radial_velocity": icrs.radial_velocity.to(u.km / u.s),
        }
    )
    for name in ("parallax", "pmra", "pmdec", "radial_velocity"):
        table[f"{name}_error"] = 0.01 * np.abs(table[name]) + 1e-3 * table[name].unit
    return table


def test_error_columns_are_read_into_astrometry(icrs, truth):
    table = gaia_table(icrs)
    table["radial_velocity"][2] = np.nan
    table["radial_velocity_error"][2] = np.nan  # no error needed where no RV
    data = to_phase_space(table)
    astro = data.astrometry
    np.testing.assert_allclose(astro["ra"], icrs.ra.rad, rtol=1e-14)
    np.testing.assert_allclose(
        astro["parallax_error"], table["parallax_error"].to_value(u.mas), rtol=1e-14
    )
    assert np.isnan(astro["radial_velocity"][2])
    assert_matches_without_rv(data, truth, np.arange(N_STARS) == 2)


def test_partial_or_bad_error_columns_are_refused(icrs):
    table = gaia_table(icrs)
    del table["pmdec_error"]
    with pytest.raises(CatalogueError, match=r"not \['pmdec_error'\]"):
        to_phase_space(table)
    table = gaia_table(icrs)
    table["parallax_error"][4] = 0 * u.mas
    with pytest.raises(CatalogueError, match="errors <= 0"):
        to_phase_space(table)
    table = gaia_table(icrs)
    table["radial_velocity_error"][4] = np.nan  # an RV without its error
    with pytest.raises(CatalogueError, match="radial_velocity_error"):
        to_phase_space(table)
    table = gaia_table(icrs)
    table["distance"] = icrs.distance.to(u.kpc)
    del table["parallax"]
    with pytest.raises(CatalogueError, match="gives distances, not parallaxes"):
        to_phase_space(table)


def test_columns_mapping(sky_table, truth):
    sky_table.rename_columns(
        ["ra", "pmra", "radial_velocity", "distance"], ["RA_ICRS", "pmRA", "RV", "d"]
    )
    columns = {"ra": "RA_ICRS", "pmra": "pmRA", "radial_velocity": "RV"}
    data = to_phase_space(sky_table, columns={**columns, "distance": "d"})
    assert_matches(data, truth)


def test_distance_column_wins_over_parallax(sky_table, truth):
    sky_table["parallax"] = np.full(N_STARS, -1.0) * u.mas
    assert_matches(to_phase_space(sky_table), truth)
    with pytest.raises(CatalogueError, match="parallax <= 0"):
        to_phase_space(sky_table, columns={"parallax": "parallax"})


def test_no_warning_without_dropping(sky_table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_phase_space(sky_table, drop_invalid=True)


# Bad input, one case at a time: each error names the problem and the fix.


def test_skycoord_without_distance(icrs):
    with pytest.raises(CatalogueError, match=r"no distances.*distance="):
        to_phase_space(SkyCoord(ra=icrs.ra, dec=icrs.dec))


def test_skycoord_without_velocities(icrs):
    with pytest.raises(CatalogueError, match=r"no velocities.*radial_velocity="):
        to_phase_space(SkyCoord(ra=icrs.ra, dec=icrs.dec, distance=icrs.distance))


def test_skycoord_without_radial_velocity(icrs):
    coord = icrs_like(icrs, radial_velocity=None)
    with pytest.raises(CatalogueError, match="no radial velocities"):
        to_phase_space(coord)


def test_skycoord_without_proper_motions(icrs):
    coord = icrs_like(icrs, pm_ra_cosdec=None, pm_dec=None)
    with pytest.raises(CatalogueError, match="no proper motions"):
        to_phase_space(coord)


def test_missing_radial_velocity_column(sky_table):
    del sky_table["radial_velocity"]
    with pytest.raises(
        CatalogueError, match="no radial velocity column 'radial_velocity'"
    ):
        to_phase_space(sky_table)


def test_missing_proper_motion_column(sky_table):
    del sky_table["pmdec"]
    with pytest.raises(CatalogueError, match=r"no pmdec column.*columns=\{'pmdec'"):
        to_phase_space(sky_table)


def test_missing_distance_and_parallax(sky_table):
    del sky_table["distance"]
    with pytest.raises(CatalogueError, match="no distance or parallax column"):
        to_phase_space(sky_table)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_table_value(sky_table, bad):
    sky_table["pmdec"][4] = bad
    with pytest.raises(CatalogueError, match=r"'pmdec': 1; first rows \[4\]"):
        to_phase_space(sky_table)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_skycoord_value(icrs, bad):
    distance = icrs.distance.to_value(u.kpc).copy()
    distance[2] = bad
    coord = icrs_like(icrs, distance=distance * u.kpc)
    with pytest.raises(CatalogueError, match="'distance': 1"):
        to_phase_space(coord)


def test_non_finite_pair_value(truth):
    vel = truth.v_xyz.copy()
    vel[2, 9] = np.inf
    with pytest.raises(CatalogueError, match="'v_z': 1; first rows \\[9\\]"):
        to_phase_space((truth.xyz, vel))


@pytest.mark.parametrize("value", [-1.0, 0.0])
def test_non_positive_distance_column(sky_table, value):
    sky_table["distance"][10] = value * u.kpc
    with pytest.raises(CatalogueError, match="1 stars have distance <= 0"):
        to_phase_space(sky_table)


@pytest.mark.parametrize("value", [-0.2, 0.0])
def test_non_positive_parallax_column(sky_table, value):
    sky_table["parallax"] = sky_table["distance"].to(u.mas, u.parallax())
    del sky_table["distance"]
    sky_table["parallax"][10] = value * u.mas
    with pytest.raises(CatalogueError, match=r"parallax <= 0.*parallax_over_error"):
        to_phase_space(sky_table)


def test_negative_skycoord_distance(icrs):
    distance = icrs.distance.to_value(u.kpc).copy()
    distance[0] = -1.0
    # SkyCoord(distance=...) refuses negative values; a representation does not.
    rep = SphericalRepresentation(
        icrs.ra,
        icrs.dec,
        Distance(distance * u.kpc, allow_negative=True),
        differentials=icrs.data.differentials["s"],
    )
    coord = SkyCoord(ICRS(rep))
    assert coord.distance[0] < 0
    with pytest.raises(CatalogueError, match="1 stars have a distance <= 0"):
        to_phase_space(coord)


def test_dimensionless_column(sky_table):
    table = Table(sky_table)
    table["pmra"].unit = None
    with pytest.raises(CatalogueError, match=r"'pmra'.*has no unit.*unit = 'mas / yr'"):
        to_phase_space(table)
    table["pmra"].unit = u.dimensionless_unscaled
    with pytest.raises(CatalogueError, match=r"'pmra'.*has no unit"):
        to_phase_space(table)


@pytest.mark.parametrize(
    ("column", "unit", "kind"),
    [
        ("distance", u.km / u.s, "a length"),
        ("ra", u.kpc, "an angle"),
        ("pmdec", u.mas, "an angular speed"),
        ("radial_velocity", u.mas / u.yr, "a speed"),
    ],
)
def test_wrong_unit_column(sky_table, column, unit, kind):
    sky_table[column] = sky_table[column].value * unit
    with pytest.raises(CatalogueError, match=f"'{column}'.*which is not {kind}"):
        to_phase_space(sky_table)


def test_non_numeric_column(sky_table):
    table = Table(sky_table)
    table["ra"] = table["ra"].astype(str)
    with pytest.raises(CatalogueError, match=r"'ra'.*not numbers"):
        to_phase_space(table)


def test_csv_without_units(sky_table, tmp_path):
    Table(sky_table).write(tmp_path / "plain.csv", format="ascii.csv")
    with pytest.raises(CatalogueError, match=r"has no unit.*header write 'ra \[deg\]'"):
        to_phase_space(tmp_path / "plain.csv")


def test_csv_with_unparsable_unit(sky_table, tmp_path):
    table = Table(sky_table)
    table.rename_column("ra", "ra [furlongs per fortnight!]")
    table.write(tmp_path / "bad.csv", format="ascii.csv")
    with pytest.raises(CatalogueError, match="cannot parse the unit"):
        to_phase_space(tmp_path / "bad.csv")


def test_unknown_file_format(tmp_path):
    path = tmp_path / "stars.txt"
    path.write_text("ra dec\n")
    with pytest.raises(CatalogueError, match=r"\.ecsv, \.fits or \.csv"):
        to_phase_space(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no catalogue file"):
        to_phase_space(tmp_path / "nowhere.ecsv")


def test_dimensionless_pair_in_physical_units(truth):
    with pytest.raises(CatalogueError, match=r"positions are dimensionless.*kpc"):
        to_phase_space((truth.xyz.value, truth.v_xyz))


def test_wrong_unit_pair(truth):
    with pytest.raises(CatalogueError, match=r"velocities are in kpc.*not a speed"):
        to_phase_space((truth.xyz, truth.xyz))


def test_sky_catalogue_in_dimensionless_units(icrs):
    with pytest.raises(CatalogueError, match="physical unit system"):
        to_phase_space(icrs, units=DimensionlessUnitSystem())


def test_too_few_stars(sky_table, truth):
    # The flows need MIN_STARS; fit() asks for them, to_phase_space alone not.
    assert MIN_STARS > 50
    with pytest.raises(CatalogueError, match="only 50 stars, fewer than min_stars"):
        to_phase_space(sky_table[:50], min_stars=MIN_STARS)
    with pytest.raises(CatalogueError, match="only 40 stars, fewer"):
        to_phase_space(truth[:40], min_stars=MIN_STARS)
    assert len(to_phase_space(sky_table[:50])) == 50
    with pytest.raises(CatalogueError, match="holds no stars"):
        to_phase_space(sky_table[:0])


def test_too_few_stars_after_dropping(sky_table):
    table = sky_table[: MIN_STARS + 1]
    table["ra"][:2] = np.nan
    with pytest.raises(CatalogueError, match="after dropping 2"):
        to_phase_space(table, drop_invalid=True, min_stars=MIN_STARS)


def test_ambiguous_pair_shape(truth):
    pos, vel = truth.xyz[:, :3], truth.v_xyz[:, :3]
    with pytest.raises(CatalogueError, match=r"\(3, 3\): it is ambiguous"):
        to_phase_space((pos, vel))


def test_bad_pair_shapes(truth):
    with pytest.raises(CatalogueError, match=r"expected \(3, N\).*or \(N, 3\)"):
        to_phase_space((truth.xyz[:2], truth.v_xyz[:2]))
    with pytest.raises(CatalogueError, match="different numbers of stars"):
        to_phase_space((truth.xyz, truth.v_xyz[:, :-1]))


def test_unsupported_inputs(icrs, sky_table):
    with pytest.raises(TypeError, match="cannot read a catalogue from ndarray"):
        to_phase_space(np.zeros((N_STARS, 6)))
    with pytest.raises(TypeError, match="columns= names table columns"):
        to_phase_space(icrs, columns={"ra": "RA"})
    with pytest.raises(ValueError, match=r"unknown keys \['rv'\]"):
        to_phase_space(sky_table, columns={"rv": "RV"})
    with pytest.raises(ValueError, match="both a distance and a parallax"):
        to_phase_space(sky_table, columns={"distance": "d", "parallax": "p"})
    with pytest.raises(TypeError, match="units must be a gala UnitSystem"):
        to_phase_space(icrs, units=u.kpc)
    with pytest.raises(ValueError, match="no Galactocentric frame"):
        to_phase_space(icrs, units=DimensionlessUnitSystem(), galcen_frame={})
