"""Exact truths: samples and distribution functions whose potential is known.

One module per family: the Plummer sphere (:mod:`.plummer`), isotropic tracers
of any spherical potential by Eddington inversion (:mod:`.eddington`) and
anisotropic ones of Cuddeford's family (:mod:`.anisotropic`), Dehnen's cusped
spheres as a gala potential (:mod:`.dehnen`), and
axisymmetric discs and rotating populations with DFs f(E, L_z) (:mod:`.disc`,
:mod:`.rotating`), a rotating bar with a DF of the Jacobi integral
(:mod:`.bar`), and Gaia-like catalogues of any of them seen from the Sun
(:mod:`.gaia`).
Every truth has the analytic gradient of ln f, so a potential fitted on exact
gradients measures the method's floor, and an exact sampler, so a fitted
potential can be scored at fresh stars of the same DF.
"""

from .anisotropic import CuddefordDF, anisotropy_profile
from .axisymmetric import AxisymmetricDF, disc_galaxy_potential, milky_way_potential
from .bar import BarDF, barred_galaxy_potential
from .dehnen import DehnenPotential
from .disc import ShuDiscDF
from .eddington import EddingtonDF, TracerDensity, eddington_sample
from .gaia import GaiaErrorModel, mock_gaia_catalogue
from .plummer import PlummerTruth, plummer_sample
from .rotating import RotatingPolytropeDF

__all__ = [
    "AxisymmetricDF",
    "BarDF",
    "CuddefordDF",
    "DehnenPotential",
    "EddingtonDF",
    "GaiaErrorModel",
    "PlummerTruth",
    "RotatingPolytropeDF",
    "ShuDiscDF",
    "TracerDensity",
    "anisotropy_profile",
    "barred_galaxy_potential",
    "disc_galaxy_potential",
    "eddington_sample",
    "milky_way_potential",
    "mock_gaia_catalogue",
    "plummer_sample",
]
