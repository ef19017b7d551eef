r"""Mock Gaia catalogues: true stars seen from the Sun, with Gaia DR3-like errors.

:func:`mock_gaia_catalogue` turns Galactocentric positions and velocities into
the table a Gaia query returns: ``ra``, ``dec``, ``parallax``, ``pmra``,
``pmdec``, ``radial_velocity``, each measured quantity with its ``_error``
column, and ``phot_g_mean_mag``. Radial velocities can be missing for a
random fraction of the stars (masked, as in the Gaia archive).
:class:`GaiaErrorModel` states the error laws.
"""

from __future__ import annotations

__all__ = ["GaiaErrorModel", "mock_gaia_catalogue"]

from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table
from gala.units import UnitSystem, galactic

from ..sky import SkyFrame
from ..tables import COLUMN_UNITS, ERROR_KEYS


@dataclass(frozen=True)
class GaiaErrorModel:
    r"""Gaia DR3-like uncertainties for stars of one absolute magnitude.

    A star at heliocentric distance :math:`d` has apparent magnitude
    :math:`G = M_G + 5\log_{10}(d / 10\,\mathrm{pc})` (no extinction), and

    .. math::

        \sigma_\varpi &= \sqrt{40 + 800\,\zeta + 30\,\zeta^2}\ \mu\mathrm{as},
            \qquad \zeta = 10^{0.4\,(\max(G, 13) - 15)}, \\
        \sigma_{\mu_{\alpha*}} = \sigma_{\mu_\delta}
            &= \sigma_\varpi\ \text{per year}, \\
        \sigma_{v_r} &= \sigma_{v,0}\; 10^{\,k_v\,(\max(G, 12) - 12)}.

    The parallax law has the shape of Gaia's published performance
    (0.013 mas at G = 13, 0.03 mas at 15, 0.08 mas at 17); DR3 proper-motion
    errors per year are close to the parallax errors. With the default
    :math:`M_G = 6.8`, stars at 0.1-1.5 kpc have G = 11.8-17.7,
    :math:`\sigma_\varpi` = 0.013-0.12 mas, and :math:`\sigma_{v_r}` = 1-5
    km/s. (Gaia's own spectrometer reaches only G ≈ 15-16; here one
    absolute magnitude serves for all stars, so the RV law is scaled to
    give DR3-like RV errors across the volume.)

    Parameters
    ----------
    absolute_magnitude : float
        :math:`M_G`.
    rv_error_bright : float
        :math:`\sigma_{v,0}` [km/s] at G ≤ 12.
    rv_error_slope : float
        :math:`k_v`, per magnitude.
    """

    absolute_magnitude: float = 6.8
    rv_error_bright: float = 1.0
    rv_error_slope: float = 0.12

    def magnitude(self, distance_kpc: np.ndarray) -> np.ndarray:
        """Apparent G magnitude at heliocentric distances [kpc]."""
        return self.absolute_magnitude + 5 * np.log10(distance_kpc * 100)

    def errors(self, distance_kpc: np.ndarray) -> dict[str, np.ndarray]:
        """Standard errors at heliocentric distances [kpc].

        Returns
        -------
        errors : dict
            ``parallax_error`` [mas], ``pmra_error`` and ``pmdec_error``
            [mas/yr], ``radial_velocity_error`` [km/s].
        """
        G = self.magnitude(np.asarray(distance_kpc, dtype=float))
        zeta = 10 ** (0.4 * (np.maximum(G, 13) - 15))
        parallax = 1e-3 * np.sqrt(40 + 800 * zeta + 30 * zeta**2)
        rv = self.rv_error_bright * 10 ** (
            self.rv_error_slope * (np.maximum(G, 12) - 12)
        )
        return {
            "parallax_error": parallax,
            "pmra_error": parallax.copy(),
            "pmdec_error": parallax.copy(),
            "radial_velocity_error": rv,
        }


def mock_gaia_catalogue(
    x: np.ndarray,
    v: np.ndarray,
    *,
    units: UnitSystem = galactic,
    galcen_frame: Any = None,
    errors: GaiaErrorModel | None = GaiaErrorModel(),
    rv_fraction: float = 1.0,
    seed: int | np.random.Generator | None = None,
) -> Table:
    """A Gaia-like catalogue of stars at Galactocentric ``x``, ``v``.

    Parameters
    ----------
    x, v : :class:`numpy.ndarray`, shape (N, 3)
        True Galactocentric positions and velocities, in ``units``.
    units : :class:`~gala.units.UnitSystem`
    galcen_frame : :class:`~astropy.coordinates.Galactocentric` or dict, optional
        The frame of ``x`` and ``v``; the package's default when None.
    errors : :class:`GaiaErrorModel` or None
        The error laws; None writes the true values and no error columns.
    rv_fraction : float
        Fraction of stars with a radial velocity, chosen at random,
        independently of the velocities; the others' ``radial_velocity``
        (and its error) are masked.
    seed : int or :class:`numpy.random.Generator`, optional

    Returns
    -------
    catalogue : :class:`~astropy.table.Table`
        Columns ``source_id``, ``ra``, ``dec`` [deg], ``parallax`` [mas],
        ``pmra``, ``pmdec`` [mas/yr], ``radial_velocity`` [km/s], with
        ``*_error`` columns for the four measured ones when ``errors`` is
        given, and ``phot_g_mean_mag``. Sky positions are exact (Gaia's are
        good to better than a milliarcsecond).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal([-8.1, 0, 0], 0.3, size=(5, 3))
    >>> v = rng.normal([0, 0.23, 0], 0.02, size=(5, 3))
    >>> cat = mock_gaia_catalogue(x, v, rv_fraction=0.4, seed=1)
    >>> cat.colnames[:4]
    ['source_id', 'ra', 'dec', 'parallax']
    >>> int(cat["radial_velocity"].mask.sum())
    4
    """
    if not 0 < rv_fraction <= 1:
        raise ValueError(f"rv_fraction must lie in (0, 1], got {rv_fraction}")
    rng = np.random.default_rng(seed)
    x = (np.asarray(x, dtype=float) * units["length"]).to_value(u.kpc)
    speed = units["length"] / units["time"]
    v = (np.asarray(v, dtype=float) * speed).to_value(u.km / u.s)
    sky = SkyFrame(galcen_frame)
    true = sky.observe(x, v)
    table = Table()
    table["source_id"] = np.arange(len(x), dtype=np.int64)
    table["ra"] = np.degrees(true["ra"]) * u.deg
    table["dec"] = np.degrees(true["dec"]) * u.deg
    sigma = None if errors is None else errors.errors(1 / true["parallax"])
    for name in ERROR_KEYS:
        value = true[name]
        if sigma is not None:
            value = value + sigma[f"{name}_error"] * rng.standard_normal(len(x))
        table[name] = value * COLUMN_UNITS[name]
        if sigma is not None:
            table[f"{name}_error"] = sigma[f"{name}_error"] * COLUMN_UNITS[name]
    missing = rng.random(len(x)) >= rv_fraction
    for name in ("radial_velocity", "radial_velocity_error"):
        if name in table.colnames:
            table[name] = MaskedColumn(table[name], mask=missing)
    model = errors or GaiaErrorModel()
    table["phot_g_mean_mag"] = model.magnitude(1 / true["parallax"])
    return table
