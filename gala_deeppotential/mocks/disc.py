r"""A cold rotating disc: a Shu-like DF :math:`f(E, L_z)`, sampled exactly."""

from __future__ import annotations

__all__ = ["ShuDiscDF"]

import astropy.units as u
import numpy as np
from gala.potential import PotentialBase
from scipy.special import expit, gammaln

from ._common import _sample_size
from .axisymmetric import AxisymmetricDF, bisect_increasing

# Bins in |L_z| of the sampler's envelope: zero, then log-spaced from this
# fraction of the scale angular momentum to the largest bound one.
_N_LZ_BINS = 1024
_LZ_MIN_FRACTION = 1e-3
# Width of the proposal in R and z, in epicyclic units sigma/kappa and
# sigma/nu, and the Student-t degrees of freedom of its tails.
_PROPOSAL_WIDTH = 1.3
_PROPOSAL_DOF = 3.0
# Pilot proposals per bin, neighbouring bins whose pilot maxima bound a bin,
# and the margin on that bound.
_PILOT_PER_BIN = 128
_PILOT_NEIGHBOURS = 2
_ENVELOPE_MARGIN = 2.0
# Bisection steps for the proposal widths (they shape it, never the target).
_WIDTH_BISECTIONS = 50
# Restarts of a draw whose envelope was exceeded (each raises the bound).
_MAX_RESTARTS = 10
# A bin of L_z is drawn for a range of radii when its stars' density there
# reaches exp(-_REACH_EXPONENT) of their peak (see ShuDiscDF._sample_near).
_REACH_EXPONENT = 20.0
# Nodes of the L_z quadrature in ``moments``.
_N_QUADRATURE = 20001


class ShuDiscDF(AxisymmetricDF):
    r"""A cold, rotating disc with a Shu-like DF :math:`f(E, L_z)`.

    .. math::

        f(E, L_z) = \frac{g(L_z)\, e^{-|L_z|/L_d}}{\sigma^2(L_z)}
            \exp\left[-\frac{E - E_c(L_z)}{\sigma^2(L_z)}\right]
            \quad (E < E_t),

    where :math:`E_c(L_z)` is the energy of the circular orbit with angular
    momentum :math:`|L_z|` (Shu 1969; Dehnen 1999 discusses the family). At
    fixed :math:`L_z` the radial and vertical velocities are Gaussian with
    dispersion :math:`\sigma`, and the stars sit near the circular orbit,
    within about :math:`\sigma/\kappa` in R and :math:`\sigma/\nu` in z. The
    dispersion falls exponentially with angular momentum,
    :math:`\sigma(L_z) = \sigma_0 \exp[-(|L_z| - L_0)/L_\sigma]`, and
    :math:`g(L_z) = 1/(1 + e^{-L_z/L_r})` turns off counter-rotating stars
    except near the centre. The angular-momentum scales are those of circular
    orbits, :math:`L_d = L_c(R_d)`, :math:`L_0 = L_c(R_0)`,
    :math:`L_\sigma = L_c(R_\sigma)`, :math:`L_r = L_c(R_r)`, so for a flat
    rotation curve the surface density and dispersion are close to
    exponentials in guiding radius with scale lengths set by
    :math:`R_d` and :math:`R_\sigma`.

    Parameters
    ----------
    potential : :class:`~gala.potential.PotentialBase`
        An axisymmetric potential (see :class:`AxisymmetricDF`), such as
        :func:`disc_galaxy_potential`.
    sigma : :class:`~astropy.units.Quantity` [speed]
        :math:`\sigma_0`, the radial and vertical dispersion of stars whose
        guiding radius is ``reference_radius``.
    reference_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_0`.
    scale_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_d`.
    dispersion_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_\sigma`.
    retrograde_radius : :class:`~astropy.units.Quantity` [length]
        :math:`R_r`: stars with guiding radii inside it rotate either way.
    truncation_radius : :class:`~astropy.units.Quantity` [length]
        f vanishes for :math:`E \geq E_t = \Phi(R_t, 0)`.
    sense : {"counterclockwise", "clockwise"}
        Which way the disc turns seen from +z. The Milky Way turns clockwise
        in astropy's Galactocentric frame (the Sun's :math:`L_z < 0`): a
        mock seen from the Sun (:func:`mock_gaia_catalogue`) should too, so
        that its stars move with the Sun. :math:`L_z` in the formulas above
        is then :math:`-L_z`.

    Examples
    --------
    >>> from gala_deeppotential.mocks import disc_galaxy_potential
    >>> disc = ShuDiscDF(disc_galaxy_potential())
    >>> x, v = disc.sample(2000, seed=1)
    >>> bool(np.median(np.abs(x[:, 2])) < 0.5)  # kpc: a thin disc
    True
    """

    def __init__(
        self,
        potential: PotentialBase,
        *,
        sigma: u.Quantity = 25 * u.km / u.s,
        reference_radius: u.Quantity = 8 * u.kpc,
        scale_radius: u.Quantity = 3 * u.kpc,
        dispersion_radius: u.Quantity = 10 * u.kpc,
        retrograde_radius: u.Quantity = 0.5 * u.kpc,
        truncation_radius: u.Quantity = 100 * u.kpc,
        sense: str = "counterclockwise",
    ) -> None:
        super().__init__(potential, truncation_radius)
        senses = {"counterclockwise": 1, "clockwise": -1}
        if sense not in senses:
            raise ValueError(
                f"sense must be 'counterclockwise' or 'clockwise', got {sense!r}"
            )
        self.sense = senses[sense]
        radii = {
            "reference_radius": reference_radius,
            "scale_radius": scale_radius,
            "dispersion_radius": dispersion_radius,
            "retrograde_radius": retrograde_radius,
        }
        for name, value in radii.items():
            if self._length(value, name) >= self.truncation_radius:
                raise ValueError(
                    f"{name} ({value}) must be inside the truncation radius"
                )
        self.sigma0 = self._speed(sigma, "sigma")
        lz = {
            name: float(self.circular_lz(np.array([self._length(value, name)]))[0])
            for name, value in radii.items()
        }
        self.lz_reference = lz["reference_radius"]
        self.lz_scale = lz["scale_radius"]
        self.lz_dispersion = lz["dispersion_radius"]
        self.lz_retrograde = lz["retrograde_radius"]
        self._envelope = None

    # ------------------------------------------------------------ the DF

    def dispersion(self, lz: np.ndarray) -> np.ndarray:
        r""":math:`\sigma(L_z)`, the radial and vertical dispersion [speed]."""
        return self.sigma0 * np.exp(
            -(np.abs(lz) - self.lz_reference) / self.lz_dispersion
        )

    def _log_weight(self, lz: np.ndarray) -> np.ndarray:
        r""":math:`\ln g(L_z) - |L_z|/L_d`."""
        return -np.logaddexp(0.0, -lz / self.lz_retrograde) - np.abs(lz) / self.lz_scale

    def _log_f(self, E: np.ndarray, lz: np.ndarray) -> np.ndarray:
        _, E_c, _ = self.circular_orbit(lz)
        sigma2 = self.dispersion(lz) ** 2
        return self._log_weight(lz) - np.log(sigma2) - (E - E_c) / sigma2

    def _dlog_f(self, E: np.ndarray, lz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Exact partial derivatives of ln f in E and :math:`L_z`.

        With :math:`dE_c/d|L_z| = \Omega(L_z)`, the circular frequency, and
        :math:`d\sigma^{-2}/d|L_z| = 2\sigma^{-2}/L_\sigma`.
        """
        _, E_c, omega = self.circular_orbit(lz)
        inv_sigma2 = self.dispersion(lz) ** -2.0
        d_abs = (
            -1.0 / self.lz_scale
            + 2.0 / self.lz_dispersion
            + inv_sigma2 * (omega - 2.0 * (E - E_c) / self.lz_dispersion)
        )
        d_lz = (
            expit(-lz / self.lz_retrograde) / self.lz_retrograde + np.sign(lz) * d_abs
        )
        return -inv_sigma2, d_lz

    # ------------------------------------------------------------ sampling

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Draw ``n`` stars exactly: positions and velocities, each (n, 3).

        In the coordinates :math:`(R, \phi, z, v_R, L_z, v_z)` the phase-space
        volume element is :math:`dR\,d\phi\,dz\,dv_R\,dL_z\,dv_z`, so the
        stars' density there is f itself. The azimuth is uniform, and given
        :math:`(R, z, L_z)` the velocities :math:`v_R, v_z` are Gaussian with
        dispersion :math:`\sigma(L_z)`. :math:`(L_z, R, z)` are drawn by
        rejection from an envelope: :math:`L_z` uniform within one of
        :data:`_N_LZ_BINS` bins, R and z from Student-t distributions centred
        on the bin's circular orbit with epicyclic widths. Each bin's envelope
        constant is the largest density ratio found by a pilot draw in it and
        its neighbours, times a margin; every proposal is checked against it,
        and a proposal above it raises instead of biasing the sample. Stars
        with :math:`E \geq E_t` are rejected.

        Parameters
        ----------
        n : int
            Number of stars.
        seed : int or :class:`numpy.random.Generator`, optional
            Seed for reproducibility (the envelope's pilot draws from it too).

        Returns
        -------
        x : :class:`numpy.ndarray` [length]
            Positions, shape ``(n, 3)``, in the potential's unit system.
        v : :class:`numpy.ndarray` [speed]
            Velocities, shape ``(n, 3)``.
        """
        n = _sample_size(n)
        rng = np.random.default_rng(seed)
        return self._sample(n, rng, self._build_envelope(rng))

    def _sample_near(
        self, n: int, rng: np.random.Generator, R_min: float, R_max: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stars of the bins in L_z whose stars can reach radii [R_min, R_max].

        A bin is dropped when, at every radius in the range, the effective
        potential lies more than :data:`_REACH_EXPONENT` dispersions squared
        above the circular orbit's energy: its stars' density there is below
        :math:`e^{-20}` of its peak. Drawing only the other bins is then exact
        for stars in that range, and the disc's centre, where the envelope is
        hardest to bound, is never drawn for a volume far from it.
        """
        env = self._build_envelope(rng)
        radii = np.linspace(R_min, R_max, 65)
        edges = np.stack(
            [env["lo"], env["lo"] + 0.5 * env["width"], env["lo"] + env["width"]]
        )
        reach = np.zeros(env["lo"].size, dtype=bool)
        for lz in edges:
            _, E_c, _ = self.circular_orbit(lz)
            phi_eff = self._phi_plane(radii)[:, None] + 0.5 * (lz / radii[:, None]) ** 2
            excess = (phi_eff.min(axis=0) - E_c) / self.dispersion(lz) ** 2
            reach |= excess < _REACH_EXPONENT
        env["drawn"] = reach
        _set_cdf(env)
        return self._sample(n, rng, env)

    def _sample(
        self, n: int, rng: np.random.Generator, envelope: dict
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` stars by rejection from ``envelope``.

        A proposal above its bin's bound (rare, where the pilot draws missed
        the peak, as near :math:`L_z = 0`) raises that bound and restarts
        the whole draw, so every star returned came from a true envelope.
        """
        parts, have = [], 0
        for _ in range(_MAX_RESTARTS + 1):
            try:
                while have < n:
                    batch = self._propose(envelope, rng, max(4096, 3 * (n - have)))
                    parts.append(batch)
                    have += len(batch[0])
                break
            except _EnvelopeExceeded as exceeded:
                bins, log_ratio = exceeded.args
                np.maximum.at(
                    envelope["log_bound"], bins, log_ratio + np.log(_ENVELOPE_MARGIN)
                )
                _set_cdf(envelope)
                parts, have = [], 0
        else:
            raise RuntimeError(
                f"the sampler's envelope was exceeded {_MAX_RESTARTS + 1} times: the "
                "disc is too far from epicyclic for it; a warmer disc or a larger "
                "truncation radius may help"
            )
        R, azimuth, z, v_R, lz, v_z = (
            np.concatenate(c)[:n] for c in zip(*parts, strict=True)
        )
        return self._to_cartesian(R, azimuth, z, v_R, lz / R, v_z)

    def _build_envelope(self, rng: np.random.Generator) -> dict:
        """Bins in L_z with their proposal widths and envelope constants."""
        edges_abs = np.concatenate(
            [
                [0.0],
                np.geomspace(_LZ_MIN_FRACTION * self.lz_scale, self.lz_max, _N_LZ_BINS),
            ]
        )
        edges = np.concatenate([-edges_abs[:0:-1], edges_abs])
        lo, hi = edges[:-1], edges[1:]
        centre = 0.5 * (lo + hi)
        R_g, E_c, _ = self.circular_orbit(centre)
        s_R, s_z = self._proposal_widths(R_g, E_c, centre, self.dispersion(centre))
        env = {"lo": lo, "width": hi - lo, "R_g": R_g, "s_R": s_R, "s_z": s_z}
        bins = np.repeat(np.arange(lo.size), _PILOT_PER_BIN)
        log_ratio = self._log_ratio(env, bins, *self._draw(env, bins, rng))
        pilot = np.full(lo.size, -np.inf)
        np.maximum.at(pilot, bins, log_ratio)
        window = 2 * _PILOT_NEIGHBOURS + 1
        padded = np.pad(pilot, _PILOT_NEIGHBOURS, constant_values=-np.inf)
        bound = np.max(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)
        if not np.any(np.isfinite(bound)):
            raise ValueError(
                "no star of this disc is bound: the truncation energy is below "
                "every circular orbit's; raise truncation_radius"
            )
        # Bins whose pilot found f = 0 everywhere keep the smallest bound, so
        # a star there is still possible and still checked.
        bound = np.where(np.isfinite(bound), bound, np.min(bound[np.isfinite(bound)]))
        env["log_bound"] = bound + np.log(_ENVELOPE_MARGIN)
        env["drawn"] = np.ones(lo.size, dtype=bool)
        _set_cdf(env)
        return env

    def _proposal_widths(
        self, R_g: np.ndarray, E_c: np.ndarray, lz: np.ndarray, sigma: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Half-widths of the bins' proposals in R and z.

        Outward from the circular orbit, the distance at which the effective
        potential has risen by :math:`\sigma^2/2` (the epicyclic
        :math:`\sigma/\kappa` for a cold disc; the outer side is the
        shallower one), and upward, the height at which Φ has risen by
        :math:`\sigma^2/2` (:math:`\sigma/\nu`), each bisected.
        """
        rise = 0.5 * sigma**2
        phi_plane = self._phi_plane(R_g)

        zero = np.zeros_like(R_g)
        reach = np.full(R_g.shape, self.truncation_radius)
        d_R = bisect_increasing(
            lambda d: self._phi_plane(R_g + d) + 0.5 * (lz / (R_g + d)) ** 2 - E_c,
            rise,
            zero,
            reach,
            _WIDTH_BISECTIONS,
        )
        d_z = bisect_increasing(
            lambda d: self._phi_Rz(R_g, d) - phi_plane,
            rise,
            zero,
            reach,
            _WIDTH_BISECTIONS,
        )
        return _PROPOSAL_WIDTH * d_R, _PROPOSAL_WIDTH * d_z

    def _draw(self, env: dict, bins: np.ndarray, rng: np.random.Generator):
        """Proposals (L_z, R, z) from the envelope's bins ``bins``."""
        lz = env["lo"][bins] + env["width"][bins] * rng.random(bins.size)
        R = env["R_g"][bins] + env["s_R"][bins] * rng.standard_t(
            _PROPOSAL_DOF, bins.size
        )
        z = env["s_z"][bins] * rng.standard_t(_PROPOSAL_DOF, bins.size)
        return lz, R, z

    def _log_ratio(self, env, bins, lz, R, z) -> np.ndarray:
        r"""ln of the target density over the proposal's, :math:`-\infty` where f = 0.

        The target density of :math:`(L_z, R, z)` integrates f over
        :math:`v_R, v_z` without the truncation (the rejection at
        :math:`E \geq E_t` applies it), and is zero where the effective
        potential alone reaches :math:`E_t`.
        """
        out = np.full(lz.size, -np.inf)
        inside = R > 0
        lz, R, z, bins = lz[inside], R[inside], z[inside], bins[inside]
        phi_eff = self._phi_Rz(R, z) + 0.5 * (lz / R) ** 2
        _, E_c, _ = self.circular_orbit(lz)
        sigma2 = self.dispersion(lz) ** 2
        log_target = self._log_weight(lz) - (phi_eff - E_c) / sigma2
        t_R = (R - env["R_g"][bins]) / env["s_R"][bins]
        t_z = z / env["s_z"][bins]
        log_proposal = (
            -np.log(env["width"][bins] * env["s_R"][bins] * env["s_z"][bins])
            + _log_student_t(t_R)
            + _log_student_t(t_z)
        )
        out[inside] = np.where(
            phi_eff < self.energy_max, log_target - log_proposal, -np.inf
        )
        return out

    def _propose(self, env: dict, rng: np.random.Generator, size: int):
        """One batch of accepted stars in cylindrical coordinates."""
        bins = np.minimum(
            np.searchsorted(env["cdf"], rng.random(size), side="right"),
            env["cdf"].size - 1,
        )
        lz, R, z = self._draw(env, bins, rng)
        log_ratio = self._log_ratio(env, bins, lz, R, z)
        excess = log_ratio - env["log_bound"][bins]
        if np.any(excess > 0):
            raise _EnvelopeExceeded(bins[excess > 0], log_ratio[excess > 0])
        keep = np.log(rng.random(size)) < excess
        lz, R, z = lz[keep], R[keep], z[keep]
        sigma = self.dispersion(lz)
        v_R = sigma * rng.standard_normal(lz.size)
        v_z = sigma * rng.standard_normal(lz.size)
        E = self._phi_Rz(R, z) + 0.5 * ((lz / R) ** 2 + v_R**2 + v_z**2)
        bound = E < self.energy_max
        azimuth = rng.uniform(0.0, 2 * np.pi, lz.size)
        return tuple(c[bound] for c in (R, azimuth, z, v_R, lz, v_z))

    # ------------------------------------------------------------ moments

    def moments(self, R: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        r"""Density and velocity moments at (R, z) by quadrature of f over velocities.

        With :math:`d^3v = dv_R\,dv_z\,dL_z/R`, the Gaussian integrals over
        :math:`v_R, v_z` are closed forms within the truncation circle
        :math:`v_R^2 + v_z^2 < 2(E_t - \Phi_{\rm eff})`, and the integral
        over :math:`L_z` is a trapezoid sum on :data:`_N_QUADRATURE` nodes.

        Parameters
        ----------
        R, z : :class:`numpy.ndarray` [length]
            Cylindrical radii and heights, the same shape (1-D).

        Returns
        -------
        moments : dict
            ``"density"``: the number density, in the DF's (unnormalised)
            units; ``"mean_v_phi"``, ``"mean_v_phi2"`` and ``"mean_v_R2"``
            (equal to the mean :math:`v_z^2`): velocity moments [speed,
            speed²].
        """
        R = np.atleast_1d(np.asarray(R, dtype=float))
        z = np.broadcast_to(np.asarray(z, dtype=float), R.shape)
        lz = np.linspace(-self.lz_max, self.lz_max, _N_QUADRATURE)
        _, E_c, _ = self.circular_orbit(lz)
        sigma2 = self.dispersion(lz) ** 2
        log_w = self._log_weight(lz) - np.log(sigma2)
        phi = self._phi_Rz(R, z)
        out = {
            k: np.empty(R.size)
            for k in ("density", "mean_v_phi", "mean_v_phi2", "mean_v_R2")
        }
        for i in range(R.size):
            phi_eff = phi[i] + 0.5 * (lz / R[i]) ** 2
            room = np.clip((self.energy_max - phi_eff) / sigma2, 0.0, None)
            g = np.exp(log_w - (phi_eff - E_c) / sigma2) * (phi_eff < self.energy_max)
            n0 = g * 2 * np.pi * sigma2 * -np.expm1(-room)
            m2 = g * 2 * np.pi * sigma2**2 * (1 - (1 + room) * np.exp(-room))
            v_phi = lz / R[i]
            density = np.trapezoid(n0, lz) / R[i]
            out["density"][i] = density
            out["mean_v_phi"][i] = (
                self.sense * np.trapezoid(n0 * v_phi, lz) / R[i] / density
            )
            out["mean_v_phi2"][i] = np.trapezoid(n0 * v_phi**2, lz) / R[i] / density
            out["mean_v_R2"][i] = np.trapezoid(m2, lz) / R[i] / density
        return out


class _EnvelopeExceeded(Exception):
    """Proposals above their bins' bounds: (bins, ln of the density ratio)."""


def _set_cdf(env: dict) -> None:
    """The bins' cumulative probabilities from their bounds and which are drawn."""
    weights = np.exp(env["log_bound"] - np.max(env["log_bound"])) * env["drawn"]
    env["cdf"] = np.cumsum(weights) / np.sum(weights)


def _log_student_t(t: np.ndarray) -> np.ndarray:
    """ln of the Student-t density with :data:`_PROPOSAL_DOF` degrees of freedom."""
    dof = _PROPOSAL_DOF
    return (
        gammaln((dof + 1) / 2)
        - gammaln(dof / 2)
        - 0.5 * np.log(dof * np.pi)
        - (dof + 1) / 2 * np.log1p(t**2 / dof)
    )
