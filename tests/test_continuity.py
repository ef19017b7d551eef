"""The pattern speed measured from the stars' continuity equation."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from gala_deeppotential import fit
from gala_deeppotential.continuity import continuity_pattern_speed
from gala_deeppotential.mocks import BarDF, barred_galaxy_potential
from gala_deeppotential.pipeline import _resolve_pattern_speed
from gala_deeppotential.selection import SkySelection
from gala_deeppotential.summary import fit_summary

OMEGA = 40 * u.km / u.s / u.kpc
N_STARS = 2**14
# Measured on 2^14 stars of the bar, seeds 0-11: the uncertainty is 3.9-4.6%
# of Omega_p, and the error over it lies within -1.26 and +0.92 (rms 0.77).


@pytest.fixture(scope="module")
def bar():
    return BarDF(barred_galaxy_potential(), OMEGA)


@pytest.fixture(scope="module")
def stars(bar):
    return [bar.sample(N_STARS, seed=seed) for seed in range(3)]


def test_the_bar_pattern_speed_is_recovered_within_its_uncertainty(bar, stars):
    for x, v in stars:
        measured = continuity_pattern_speed(x, v)
        assert 0.03 < measured.uncertainty / bar.pattern_speed < 0.06
        pull = (measured.value - bar.pattern_speed) / measured.uncertainty
        assert abs(pull) < 2.5
        # A pattern turning 20% slower lies far outside it.
        assert abs(measured.value - 0.8 * bar.pattern_speed) > 3 * measured.uncertainty
        assert measured.m == 2 and measured.n_stars == N_STARS
        assert measured.to_dict()["method"] == "continuity"


def test_the_mirror_image_turns_the_other_way(stars):
    x, v = stars[0]
    flip = np.array([1.0, -1.0, 1.0])
    forward = continuity_pattern_speed(x, v)
    mirrored = continuity_pattern_speed(x * flip, v * flip)
    assert mirrored.value == pytest.approx(-forward.value, rel=1e-9)
    assert mirrored.uncertainty == pytest.approx(forward.uncertainty, rel=1e-9)


def test_the_scales_follow_the_stars(stars):
    x, v = stars[0]
    measured = continuity_pattern_speed(x, v)
    radius = np.hypot(x[:, 0], x[:, 1])
    assert measured.scales == pytest.approx(np.quantile(radius, [0.2, 0.4, 0.6, 0.8]))
    one = continuity_pattern_speed(x, v, scales=(2.0,))
    assert one.scales == (2.0,)
    assert one.uncertainty > measured.uncertainty


def test_a_pattern_without_m2_structure_is_refused(stars):
    x, v = stars[0]
    # Each star and its copy turned by 90 degrees: the m = 2 harmonics cancel.
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    both_x = np.concatenate([x, x @ turn.T])
    both_v = np.concatenate([v, v @ turn.T])
    with pytest.raises(ValueError, match=r"no m = 2 pattern.*pattern_speed='joint'"):
        continuity_pattern_speed(both_x, both_v)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x": np.zeros((10, 2))}, "shape \\(n, 3\\)"),
        ({"v": np.full((N_STARS, 3), np.nan)}, "must be finite"),
        ({"m": 0}, "m must be a positive integer"),
        ({"scales": (1.0, -2.0)}, "scales must be positive"),
    ],
)
def test_bad_input(stars, change, match):
    x, v = stars[0]
    kwargs = {"x": x, "v": v, **change}
    with pytest.raises(ValueError, match=match):
        continuity_pattern_speed(**kwargs)


def test_fit_measures_the_pattern_speed_and_keeps_it(bar, stars):
    x, v = stars[1]
    result = fit(
        bar.to_phase_space_position(x, v),
        units=bar.units,
        pattern_speed="fit",
        virial=False,
        df_options={"n_flows": 1, "epochs": 1, "batch_size": 512},
        potential_options={"n_samples": 512, "n_steps": 20, "batch_size": 256},
        threads=1,
        progress=False,
    )
    measured = continuity_pattern_speed(x, v)
    report = result.report(n_points=256)["potential"]
    assert report["pattern_speed"] == pytest.approx(measured.value, rel=1e-6)
    assert report["network"]["pattern_speed"] == "fixed"
    record = report["pattern_speed_measurement"]
    assert record["uncertainty"] == pytest.approx(measured.uncertainty)
    assert result.config["pattern_speed"] == pytest.approx(measured.value)
    km_s_kpc = record["value"] * (1 / u.Myr).to_value(u.km / u.s / u.kpc)
    assert result.potential.pattern_speed.to_value(u.km / u.s / u.kpc) == (
        pytest.approx(km_s_kpc)
    )
    # The command line's summary says how it was found, with the uncertainty.
    sigma = record["uncertainty"] * (1 / u.Myr).to_value(u.km / u.s / u.kpc)
    assert (
        "pattern speed measured from the stars' continuity equation as "
        f"{km_s_kpc:.4g} km/s/kpc +- {sigma:.4g} km/s/kpc"
    ) in fit_summary(result.report(n_points=256), seconds=1.0)


def test_the_joint_fit_is_what_a_selection_leaves(bar, stars):
    x, v = stars[1]
    catalogue = bar.to_phase_space_position(x, v)
    with pytest.raises(ValueError, match="pattern_speed='joint'"):
        fit(
            catalogue,
            units=bar.units,
            pattern_speed="continuity",
            selection=SkySelection(distance_limit=20 * u.kpc),
            progress=False,
        )
    with pytest.raises(ValueError, match="one of \\('fit', 'continuity', 'joint'\\)"):
        fit(catalogue, units=bar.units, pattern_speed="measure")
    # With a selection, "fit" is the joint fit; without one it is measured.
    joint = ("fit", {"pattern_speed": "joint"})
    assert _resolve_pattern_speed("fit", bar.units, None, True, None) == joint
    assert _resolve_pattern_speed("joint", bar.units, None, None, None) == joint
    assert _resolve_pattern_speed(None, bar.units, None, None, None) == (None, {})
