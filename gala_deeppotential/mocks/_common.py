"""Helpers shared by the mock families: sizes, unit handling, phase-space wrapping."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from gala.dynamics import PhaseSpacePosition
from gala.units import DimensionlessUnitSystem, UnitSystem

from ..directions import random_directions


def _sample_size(n) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _phase_space_position(
    x: np.ndarray, v: np.ndarray, units: UnitSystem
) -> PhaseSpacePosition:
    """(N, 3) arrays in ``units`` as a :class:`~gala.dynamics.PhaseSpacePosition`."""
    if isinstance(units, DimensionlessUnitSystem):
        return PhaseSpacePosition(pos=x.T, vel=v.T)
    length = units["length"]
    return PhaseSpacePosition(pos=x.T * length, vel=v.T * length / units["time"])


def _r2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.sum(x**2, axis=-1)


def _G_in(units: UnitSystem) -> float:
    from astropy.constants import G

    return G.decompose(units).value


def _positive(value, name: str, physical_type: str, units: UnitSystem) -> float:
    if not isinstance(value, u.Quantity) or value.unit.physical_type != physical_type:
        raise u.UnitTypeError(
            f"{name} must be an astropy Quantity of {physical_type}, e.g. "
            f"{name}=1 * u.{units[physical_type]}; got {value!r}"
        )
    out = float(value.decompose(units).value)
    if not np.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return out


def _polytrope_velocities(
    room: np.ndarray, index: float, rng: np.random.Generator
) -> np.ndarray:
    r"""Isotropic velocities (N, 3) of a DF :math:`(\Psi - v^2/2)^n` at points
    where :math:`\Psi` is ``room``: :math:`s = v^2 / 2\Psi` is Beta(3/2, n + 1)."""
    s = rng.beta(1.5, index + 1.0, len(room))
    return np.sqrt(2 * room * s)[:, None] * random_directions(len(room), rng)
