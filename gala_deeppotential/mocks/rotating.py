r"""A hot rotating population: an isotropic polytrope given net rotation."""

from __future__ import annotations

__all__ = ["RotatingPolytropeDF"]

import astropy.units as u
import numpy as np
from gala.potential import PotentialBase

from ..directions import random_directions
from ._common import _polytrope_velocities, _sample_size
from .axisymmetric import AxisymmetricDF

# Shells of the position sampler's envelope, log-spaced from this fraction of
# the truncation radius (the first shell starts at the centre).
_N_SHELLS = 512
_INNER_SHELL_FRACTION = 1e-4
# Nodes of the v_phi quadrature in ``moments``.
_N_QUADRATURE = 4001


class RotatingPolytropeDF(AxisymmetricDF):
    r"""A hot population: an isotropic polytrope made to rotate by an odd term in L_z.

    .. math::

        f(E, L_z) = (E_t - E)^{n}
            \left[1 + k \tanh\left(\frac{L_z}{L_r}\right)\right]
            \quad (E < E_t),

    with :math:`E_t = \Phi(R_t, 0)` and :math:`L_r = L_c(R_r)`, the
    angular momentum of the circular orbit at :math:`R_r`. The odd term
    leaves the density that of the isotropic part,
    :math:`\rho \propto (E_t - \Phi)^{n + 3/2}`, which follows the
    equipotentials (mildly flattened by a disc), and gives a mean rotation
    :math:`\bar v_\phi` that grows with :math:`k` (:math:`|k| < 1`).

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        An axisymmetric potential (see :class:`AxisymmetricDF`).
    index : float
        The polytropic index n (> 1/2 so that f vanishes smoothly at
        :math:`E_t`).
    rotation : float
        k, in (-1, 1): the fraction of stars' :math:`L_z` sign flipped to
        prograde for :math:`|L_z| \gg L_r`.
    rotation_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_r`.
    truncation_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_t`: no star goes beyond it.

    Examples
    --------
    >>> from gala_deeppotential.mocks import milky_way_potential
    >>> hot = RotatingPolytropeDF(milky_way_potential())
    >>> x, v = hot.sample(2000, seed=1)
    >>> lz = hot.lz(x, v)
    >>> bool(np.mean(lz > 0) > 0.6)  # it rotates
    True
    """

    def __init__(
        self,
        potential: PotentialBase,
        *,
        index: float = 3.0,
        rotation: float = 0.6,
        rotation_radius: u.Quantity = 2 * u.kpc,
        truncation_radius: u.Quantity = 60 * u.kpc,
    ) -> None:
        super().__init__(potential, truncation_radius)
        if not np.isfinite(index) or index <= 0.5:
            raise ValueError(f"index must be a number above 1/2, got {index!r}")
        if not np.isfinite(rotation) or abs(rotation) >= 1:
            raise ValueError(f"rotation must be in (-1, 1), got {rotation!r}")
        r_rot = self._length(rotation_radius, "rotation_radius")
        self.index = float(index)
        self.rotation = float(rotation)
        self.lz_rotation = float(self.circular_lz(np.array([r_rot]))[0])

    # ------------------------------------------------------------ the DF

    def _log_f(self, E: np.ndarray, lz: np.ndarray) -> np.ndarray:
        odd = self.rotation * np.tanh(lz / self.lz_rotation)
        return self.index * np.log(self.energy_max - E) + np.log1p(odd)

    def _dlog_f(self, E: np.ndarray, lz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.tanh(lz / self.lz_rotation)
        d_lz = self.rotation * (1 - t**2) / (self.lz_rotation * (1 + self.rotation * t))
        return -self.index / (self.energy_max - E), d_lz

    def relative_density(self, x: np.ndarray) -> np.ndarray:
        r"""The density over the central one.

        :math:`[(E_t - \Phi(x)) / (E_t - \Phi(0))]^{n + 3/2}`.
        """
        x = np.atleast_2d(np.asarray(x, dtype=float)) - self._origin
        depth = self.energy_max - self._phi(np.zeros((1, 3)))[0]
        room = np.clip(self.energy_max - self._phi(x), 0.0, None)
        return (room / depth) ** (self.index + 1.5)

    # ------------------------------------------------------------ sampling

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Draw ``n`` stars exactly: positions and velocities, each (n, 3).

        Positions are drawn by rejection from spherical shells: the density
        is largest in the plane at each radius (the potential is deepest
        there) and falls outward, so the plane's density at a shell's inner
        edge bounds it throughout the shell; a shell is chosen with that bound
        times its volume, a point uniformly in its volume, and kept with the
        density's ratio to the bound. Given the position, the isotropic part
        has :math:`s = v^2 / 2(E_t - \Phi)` distributed as
        Beta(3/2, n + 1) and an isotropic direction. Finally each star keeps
        its velocity with probability :math:`[1 + k \tanh(L_z/L_r)]/2` and
        otherwise has :math:`v_\phi` reversed, which turns the symmetric
        :math:`f_0(E)` into :math:`f_0(E) [1 + k\tanh(L_z/L_r)]` exactly.

        Parameters
        ----------
        n : int
            Number of stars.
        seed : int or :class:`numpy.random.Generator`, optional
            Seed for reproducibility.

        Returns
        -------
        x, v : :class:`numpy.ndarray`
            Positions [length] and velocities [speed], each ``(n, 3)``.
        """
        n = _sample_size(n)
        rng = np.random.default_rng(seed)
        x = self._sample_positions(n, rng)
        room = self.energy_max - self._phi(x)
        v = _polytrope_velocities(room, self.index, rng)
        R = np.hypot(x[:, 0], x[:, 1])
        lz = x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]
        flip = rng.random(n) > 0.5 * (
            1 + self.rotation * np.tanh(lz / self.lz_rotation)
        )
        # Reverse v_phi: subtract twice the velocity's azimuthal component.
        e_phi = np.column_stack([-x[:, 1], x[:, 0], np.zeros(n)]) / R[:, None]
        v_phi = np.sum(v * e_phi, axis=1)
        v[flip] -= 2 * v_phi[flip, None] * e_phi[flip]
        return x + self._origin, v

    def _sample_positions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        edges = np.concatenate(
            [
                [0.0],
                np.geomspace(
                    _INNER_SHELL_FRACTION * self.truncation_radius,
                    self.truncation_radius,
                    _N_SHELLS,
                ),
            ]
        )
        inner = edges[:-1]
        plane = np.column_stack([inner, np.zeros_like(inner), np.zeros_like(inner)])
        bound = self.relative_density(plane + self._origin)
        if np.any(np.diff(bound) > 0):
            raise ValueError("the density must fall outward in the plane")
        volume = edges[1:] ** 3 - edges[:-1] ** 3
        cdf = np.cumsum(bound * volume)
        cdf /= cdf[-1]
        out, have = [], 0
        while have < n:
            size = max(4096, 3 * (n - have))
            shell = np.minimum(
                np.searchsorted(cdf, rng.random(size), side="right"), cdf.size - 1
            )
            r3 = edges[shell] ** 3 + volume[shell] * rng.random(size)
            x = np.cbrt(r3)[:, None] * random_directions(size, rng)
            ratio = self.relative_density(x + self._origin) / bound[shell]
            if np.any(ratio > 1 + 1e-12):
                raise RuntimeError(
                    "the density exceeds its bound in the plane: the potential is "
                    "not deepest in its plane at some radius"
                )
            keep = rng.random(size) < ratio
            out.append(x[keep])
            have += int(keep.sum())
        return np.concatenate(out)[:n]

    # ------------------------------------------------------------ moments

    def moments(self, R: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        r"""Density and mean rotation at (R, z) by quadrature over :math:`v_\phi`.

        Integrating f over :math:`v_R, v_z` leaves
        :math:`\propto (\Psi - v_\phi^2/2)^{n+1}`, with
        :math:`\Psi = E_t - \Phi`, times the odd factor.

        Returns
        -------
        moments : dict
            ``"density"`` relative to the centre's (see :meth:`relative_density`),
            ``"mean_v_phi"`` [speed] and ``"mean_v_phi2"`` [speed²].
        """
        R = np.atleast_1d(np.asarray(R, dtype=float))
        z = np.broadcast_to(np.asarray(z, dtype=float), R.shape)
        x = np.column_stack([R, np.zeros_like(R), z])
        room = np.clip(self.energy_max - self._phi(x), 0.0, None)
        out = {"density": self.relative_density(x + self._origin)}
        t = np.linspace(-1.0, 1.0, _N_QUADRATURE)
        v_phi = np.sqrt(2 * room)[:, None] * t
        weight = (1 - t**2) ** (self.index + 1) * (
            1 + self.rotation * np.tanh(R[:, None] * v_phi / self.lz_rotation)
        )
        norm = np.trapezoid(weight, t, axis=1)
        out["mean_v_phi"] = np.trapezoid(weight * v_phi, t, axis=1) / norm
        out["mean_v_phi2"] = np.trapezoid(weight * v_phi**2, t, axis=1) / norm
        return out
