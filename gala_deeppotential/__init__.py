"""Deep Potential: a gravitational potential learned from one phase-space snapshot.

The method of Green & Ting (2020): fit the stellar distribution function with an
ensemble of normalizing flows, then find the potential that makes it stationary
under the collisionless Boltzmann equation. The result is a gala potential.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .compare import compare_orbits, compare_potentials
from .df import FlowEnsemble, fit_distribution_function
from .fit import FitResult, PotentialFit, fit, fit_potential
from .gala_potential import DeepPotential
from .mocks import EddingtonDF, PlummerTruth, eddington_sample, plummer_sample
from .nn import PotentialNet
from .phasespace import PhaseSpaceData, to_phase_space

__all__ = [
    "DeepPotential",
    "EddingtonDF",
    "FitResult",
    "FlowEnsemble",
    "PhaseSpaceData",
    "PlummerTruth",
    "PotentialFit",
    "PotentialNet",
    "__version__",
    "compare_orbits",
    "compare_potentials",
    "eddington_sample",
    "fit",
    "fit_distribution_function",
    "fit_potential",
    "plummer_sample",
    "to_phase_space",
]
