"""The stationarity diagnostic: its statistics by region, and its two-way behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from gala_deeppotential.stationarity import (
    MIN_STARS_PER_REGION,
    SIGNIFICANCE,
    StationarityMap,
)


def _synthetic(offset: float, seed: int = 0) -> StationarityMap:
    """Stars in a 10 kpc disc with unit-noise rates, and a mean ``offset`` for
    those at 6 < R < 8 kpc above the plane; four members scattering by 0.01."""
    rng = np.random.default_rng(seed)
    n = 40_000
    R = 10 * np.sqrt(rng.random(n))
    phi = 2 * np.pi * rng.random(n)
    z = rng.uniform(-1, 1, n)
    x = np.column_stack([R * np.cos(phi), R * np.sin(phi), z])
    rate = rng.normal(size=n)
    rate[(R > 6) & (R < 8) & (z > 0)] += offset
    members = rate + rng.normal(scale=0.01, size=(4, 1))
    return StationarityMap(
        x=x,
        rate=rate,
        member_rate=members,
        relative=np.tanh(rate),
        units={"length": "kpc", "time": "Myr"},
    )


EDGES = (np.array([0.0, 2, 4, 6, 8, 10]), np.array([-1.0, 0.0, 1.0]))


def test_regions_hold_the_mean_rate_and_its_noise():
    smap = _synthetic(offset=0.0)
    table = smap.by_region("Rz", EDGES)
    R = np.hypot(smap.x[:, 0], smap.x[:, 1])
    sel = (R >= 6) & (R < 8) & (smap.x[:, 2] >= 0)
    assert table["n"][3, 1] == sel.sum()
    assert table["rate"][3, 1] == pytest.approx(smap.rate[sel].mean())
    members = smap.member_rate[:, sel].mean(axis=1)
    expected = np.hypot(
        smap.rate[sel].std(ddof=1) / np.sqrt(sel.sum()), members.std(ddof=1)
    )
    assert table["noise"][3, 1] == pytest.approx(expected)
    assert table["z"][3, 1] == pytest.approx(table["rate"][3, 1] / expected)
    # Pure noise: nothing is significant, in either plane.
    assert smap.significant("Rz", EDGES) == []
    assert smap.summary()["xy"]["significant"] == []


def test_the_departing_region_is_found_and_named():
    smap = _synthetic(offset=0.3)
    found = smap.significant("Rz", EDGES)
    assert len(found) == 1
    assert found[0]["region"] == "6 < R < 8, 0 < z < 1 kpc"
    assert found[0]["z"] > SIGNIFICANCE
    assert found[0]["rate"] == pytest.approx(0.3, abs=0.05)
    summary = smap.summary()
    assert summary["Rz"]["max_abs_z"] > SIGNIFICANCE
    assert summary["n_stars"] == 40_000 and summary["n_flows"] == 4


def test_sparse_regions_are_not_scored():
    smap = _synthetic(offset=0.0)
    keep = np.hypot(smap.x[:, 0], smap.x[:, 1]) > 1.0
    keep[np.flatnonzero(~keep)[: MIN_STARS_PER_REGION - 1]] = True
    sparse = StationarityMap(
        smap.x[keep],
        smap.rate[keep],
        smap.member_rate[:, keep],
        smap.relative[keep],
        smap.units,
    )
    table = sparse.by_region("Rz", (np.array([0.0, 1.0, 10.0]), np.array([-1.0, 1.0])))
    assert table["n"][0, 0] == MIN_STARS_PER_REGION - 1
    assert np.isnan(table["z"][0, 0]) and np.isfinite(table["z"][1, 0])
    with pytest.raises(ValueError, match="plane must be"):
        sparse.by_region("Rphi")
