"""Deep Potential: a gravitational potential learned from one phase-space snapshot.

The method of Green & Ting (2020): fit the stellar distribution function with an
ensemble of normalizing flows, then find the potential that makes it stationary
under the collisionless Boltzmann equation. The result is a gala potential.

The stages, in the order :func:`fit` runs them: :mod:`~.phasespace` (a
catalogue to arrays), :mod:`~.df` and :mod:`~.training` (the flows),
:mod:`~.potential` (the Φ fit), :mod:`~.virial` (the calibration of its
forces), :mod:`~.gala_potential` (the gala potential) and :mod:`~.export`
(C-speed gala potentials).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .compare import compare_orbits, compare_potentials
from .df import FlowEnsemble, FlowOptions
from .export import AsphericityWarning
from .gala_potential import DeepPotential, ExtrapolationWarning
from .mocks import EddingtonDF, PlummerTruth, eddington_sample, plummer_sample
from .nn import PotentialNet
from .phasespace import CatalogueError, PhaseSpaceData, to_phase_space
from .pipeline import FitResult, PotentialStageError, fit
from .potential import (
    DFGradients,
    PotentialCollapseWarning,
    PotentialFit,
    PotentialOptions,
    fit_potential,
)
from .training import DFOptions, TrainingOptions, fit_distribution_function
from .virial import VirialOptions, VirialWarning, calibrate, virial_scale

__all__ = [
    "AsphericityWarning",
    "CatalogueError",
    "DFGradients",
    "DFOptions",
    "DeepPotential",
    "EddingtonDF",
    "ExtrapolationWarning",
    "FitResult",
    "FlowEnsemble",
    "FlowOptions",
    "PhaseSpaceData",
    "PlummerTruth",
    "PotentialCollapseWarning",
    "PotentialFit",
    "PotentialNet",
    "PotentialOptions",
    "PotentialStageError",
    "TrainingOptions",
    "VirialOptions",
    "VirialWarning",
    "__version__",
    "calibrate",
    "compare_orbits",
    "compare_potentials",
    "eddington_sample",
    "fit",
    "fit_distribution_function",
    "fit_potential",
    "plummer_sample",
    "to_phase_space",
    "virial_scale",
]
