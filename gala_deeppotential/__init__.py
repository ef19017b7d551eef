"""Deep Potential: a gravitational potential learned from one phase-space snapshot.

The method of Green & Ting (2020): fit the stellar distribution function with an
ensemble of normalizing flows, then find the potential that makes it stationary
under the collisionless Boltzmann equation. The result is a gala potential.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .gala_potential import DeepPotential
from .mocks import PlummerTruth, plummer_sample

__all__ = ["DeepPotential", "PlummerTruth", "__version__", "plummer_sample"]
