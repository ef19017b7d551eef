"""Selection functions: completeness, the interior the Φ fit uses, ∇ln S."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from gala_deeppotential.healpix import ang2pix
from gala_deeppotential.phasespace import CatalogueError
from gala_deeppotential.potential import (
    DFGradients,
    PotentialOptions,
    _select,
    _training_points,
)
from gala_deeppotential.selection import (
    CallableSelection,
    SkySelection,
    as_selection,
)
from gala_deeppotential.sky import SkyFrame

SUN = SkyFrame().offset
RADIUS = 1.5
MARGIN = 0.1 * u.kpc


def around_sun(distance, rng, n=2000):
    """Galactocentric points at given heliocentric distances, random directions."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return SUN + np.asarray(distance)[..., None] * direction


def completeness(d):
    return 1 / (1 + (d / u.kpc).to_value(u.one) ** 2)


def test_sky_selection_parts():
    nside = 16
    pix_lon = np.radians([30.0, 30.0])
    pix_lat = np.radians([5.0, 40.0])
    mask = np.ones(12 * nside**2)
    mask[ang2pix(nside, pix_lon[:1], pix_lat[:1])] = 0.0
    sel = SkySelection(mask, distance_limit=RADIUS * u.kpc, completeness=completeness)
    S = sel.completeness(np.array([1.0, 1.0]), pix_lon, pix_lat)
    np.testing.assert_allclose(S, [0.0, 0.5])
    assert sel.completeness(np.array([1.6]), pix_lon[1:], pix_lat[1:])[0] == 0
    with pytest.raises(ValueError, match="HEALPix map"):
        SkySelection(np.full(48, 2.0))
    with pytest.raises(ValueError, match="12 \\* nside"):
        SkySelection(np.ones(50))


def test_callable_selection_agrees_with_sky_selection():
    rng = np.random.default_rng(0)
    x = around_sun(rng.uniform(0.1, 1.4, 500), rng, 500)
    ready = SkySelection(completeness=completeness).bind(None, u.kpc, x)
    function = as_selection(lambda c: completeness(c.distance)).bind(None, u.kpc, x)
    np.testing.assert_allclose(ready.completeness(x), function.completeness(x))
    assert isinstance(function.selection, CallableSelection)
    with pytest.raises(TypeError, match="SelectionFunction"):
        as_selection(3.0)


def test_only_a_full_sky_distance_limit_is_a_distance_limit():
    rng = np.random.default_rng(1)
    x = around_sun(rng.uniform(0.1, 1.4, 50), rng, 50)
    limit = RADIUS * u.kpc
    footprint = np.ones(12 * 4**2)
    assert SkySelection(distance_limit=limit).is_distance_limit
    assert SkySelection(footprint, distance_limit=limit).is_distance_limit
    assert SkySelection(distance_limit=limit).bind(None, u.kpc, x).is_distance_limit
    footprint[0] = 0.0
    for shaped in (
        SkySelection(footprint, distance_limit=limit),
        SkySelection(distance_limit=limit, completeness=completeness),
        SkySelection(completeness=completeness),
        SkySelection(),
        CallableSelection(lambda c: np.ones(len(c))),
    ):
        assert not shaped.is_distance_limit
        assert not shaped.bind(None, u.kpc, x).is_distance_limit


def test_interior_keeps_a_margin_from_the_edge():
    rng = np.random.default_rng(1)
    sel = SkySelection(distance_limit=RADIUS * u.kpc, margin=MARGIN)
    bound = sel.bind(None, u.kpc, around_sun(np.full(10, 1.0), rng, 10))
    m = MARGIN.to_value(u.kpc)
    assert bound.interior(around_sun(np.full(2000, RADIUS - 1.01 * m), rng)).all()
    assert not bound.interior(around_sun(np.full(2000, RADIUS - 0.5 * m), rng)).any()


def test_grad_log_matches_the_analytic_gradient():
    rng = np.random.default_rng(2)
    d = rng.uniform(0.2, 1.2, 300)
    x = around_sun(d, rng, 300)
    bound = SkySelection(completeness=completeness, margin=MARGIN).bind(None, u.kpc, x)
    # ln C = -ln(1 + d^2): gradient -2 d / (1 + d^2) along the line of sight.
    expected = (-2 * d / (1 + d**2))[:, None] * (x - SUN) / d[:, None]
    np.testing.assert_allclose(bound.grad_log(x), expected, rtol=1e-5, atol=1e-8)


def test_stars_outside_the_selection_are_refused():
    rng = np.random.default_rng(3)
    x = around_sun(np.array([1.0, 1.0, 1.6]), rng, 3)
    sel = SkySelection(distance_limit=RADIUS * u.kpc)
    with pytest.raises(CatalogueError, match="zero, above one or not finite at 1 of"):
        sel.bind(None, u.kpc, x)
    # Positions from noisy parallaxes may scatter out: counted, not refused.
    assert sel.bind(None, u.kpc, x, exact=False).n_outside == 1


def test_phi_points_keep_inside_and_lose_the_selection_gradient():
    rng = np.random.default_rng(4)
    x = around_sun(rng.uniform(0.0, RADIUS, 3000), rng, 3000)
    v = rng.normal(size=x.shape)
    grad_x, grad_v = rng.normal(size=x.shape), rng.normal(size=x.shape)
    points = DFGradients(x, v, grad_x, grad_v)
    bound = SkySelection(
        distance_limit=RADIUS * u.kpc, completeness=completeness, margin=MARGIN
    ).bind(None, u.kpc, x)
    kept = _select(points, bound, points, None, 0)
    inside = bound.interior(x)
    np.testing.assert_array_equal(kept.x, x[inside])
    np.testing.assert_allclose(
        kept.grad_x, grad_x[inside] - bound.grad_log(x[inside]), rtol=1e-12
    )
    np.testing.assert_array_equal(kept.grad_v, grad_v[inside])


class GaussianDF:
    """An isotropic Gaussian in position (about the Sun, 1 kpc wide) and
    velocity: a DF model with exact draws and gradients, which counts the
    points its gradients are taken at."""

    def __init__(self):
        self.graded = 0

    def sample(self, n, seed=None):
        rng = np.random.default_rng(seed)
        return SUN + rng.normal(size=(n, 3)), rng.normal(size=(n, 3))

    def grad_log_prob(self, x, v):
        self.graded += len(x)
        return -(np.asarray(x) - SUN), -np.asarray(v)

    def log_prob(self, x, v):
        return -0.5 * (((np.asarray(x) - SUN) ** 2).sum(1) + (v**2).sum(1))


def test_phi_points_from_a_model_are_topped_up_inside():
    """A DF model's draws outside the selection are dropped before their
    gradients are taken, and top-ups bring the points to n_samples."""
    df = GaussianDF()
    bound = SkySelection(distance_limit=RADIUS * u.kpc, margin=MARGIN).bind(
        None, u.kpc, SUN[None]
    )
    options = PotentialOptions(n_samples=4096)
    first = _training_points(df, options, 0, bound.interior)
    # About half of a unit Gaussian lies within 1.4 kpc of its centre.
    assert 0.4 * 4096 < len(first) < 0.65 * 4096
    assert df.graded == len(first)
    points = _select(first, bound, df, options, 0)
    assert len(points) == 4096
    assert bound.interior(points.x).all()
    # Only the kept draws (and the last top-up's few spares) were differentiated.
    assert 4096 <= df.graded < 1.2 * 4096
    np.testing.assert_allclose(
        points.grad_x, -(points.x - SUN) - bound.grad_log(points.x), atol=1e-12
    )
    np.testing.assert_array_equal(points.grad_v, -points.v)
