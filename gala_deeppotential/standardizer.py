"""The invertible per-axis map from phase space to the flows' scaled coordinates."""

from __future__ import annotations

__all__ = ["ROTATION_VARIANCE_FRACTION", "Standardizer", "fit_rotation_curve"]

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .ball_map import BallMap
from .radial_map import RadialProfileMap, VelocityEllipsoidMap, local_center


class Standardizer:
    r"""Invertible per-axis map from phase space to the flows' scaled coordinates.

    Each axis :math:`y_i` of a phase-space point
    :math:`y = (x, y, z, v_x, v_y, v_z)` maps to

    .. math::

        u_i = \begin{cases}
            \operatorname{asinh}\!\big((y_i - c_i)/a_i\big) & i \in \text{asinh axes} \\
            y_i & \text{otherwise,}
        \end{cases}
        \qquad
        s_i = (u_i - \mu_i) / \sigma_i .

    The asinh is linear within :math:`a_i` of the centre and logarithmic far
    out, so the power-law tails of a stellar system (Plummer's density falls
    as :math:`r^{-5}`, and 2^17 stars reach :math:`r \approx 700`) land within
    a few units of the origin, where the flows' splines act. The densities
    in the two coordinates differ by the Jacobian,

    .. math::

        \ln p_y(y) = \ln p_s(s)
            + \sum_i \ln\left|\frac{\partial s_i}{\partial y_i}\right|,
        \qquad
        \frac{\partial s_i}{\partial y_i} = \begin{cases}
            \big(\sigma_i \sqrt{a_i^2 + (y_i - c_i)^2}\big)^{-1} & \text{asinh axis} \\
            \sigma_i^{-1} & \text{otherwise.}
        \end{cases}

    A rotating system's velocities first lose a mean rotation about the z
    axis through the origin, for six-dimensional points,

    .. math::

        \vec v \mapsto \vec v - \frac{v_0}{\sqrt{R^2 + R_0^2}}\,(-y, x, 0),

    the rotation curve :math:`v_0 R/\sqrt{R^2 + R_0^2}` in the direction of
    :math:`\hat\phi`. This shear in velocity at fixed position has unit
    Jacobian, so it leaves the density unchanged; it centres a cold disc's
    velocities, which cluster about the local circular velocity, near zero.

    Parameters are stored in float64 and applied in the dtype of the input.
    Build one from data with :meth:`fit`.

    Parameters
    ----------
    shift, scale : sequence of float, length D
        :math:`\mu_i` and :math:`\sigma_i > 0`, in the units of :math:`u_i`.
    asinh_center, asinh_scale : sequence of float, length D
        :math:`c_i` and :math:`a_i > 0` [units of :math:`y_i`]; ignored on
        axes not in ``asinh_axes``.
    asinh_axes : sequence of int
        The axes that pass through the asinh.
    rotation_speed, rotation_radius : float
        :math:`v_0` [speed] and :math:`R_0 > 0` [length] of the rotation
        subtracted from six-dimensional points; none when :math:`v_0 = 0`.
    radial_map : dict or :class:`~.radial_map.RadialProfileMap`, optional
        A radial map of the positions (the first three axes) applied after
        the rotation and before the asinh stage, which takes the stars'
        fitted density profile to a unit Gaussian; its log-Jacobian joins
        the positions'. None: no map.
    ball_map : dict or :class:`~.ball_map.BallMap`, optional
        Instead of ``radial_map``, for positions that fill a ball (a
        catalogue limited in distance): the map that takes the ball onto all
        of space and a uniform density in it to a unit Gaussian. None: no
        map.
    velocity_map : dict or :class:`~.radial_map.VelocityEllipsoidMap`, optional
        A map of the velocities (six-dimensional points) applied after the
        rotation, which divides their radial and tangential parts by the
        stars' fitted dispersions at each radius; its log-Jacobian, a
        function of position, joins the velocities'. None: no map.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> data = rng.standard_t(3, size=(1000, 6))
    >>> scaler = Standardizer.fit(data)
    >>> s = scaler.transform(torch.as_tensor(data))
    >>> bool(torch.allclose(scaler.inverse(s), torch.as_tensor(data)))
    True
    """

    def __init__(
        self,
        shift: Sequence[float],
        scale: Sequence[float],
        asinh_center: Sequence[float],
        asinh_scale: Sequence[float],
        asinh_axes: Sequence[int] = (),
        rotation_speed: float = 0.0,
        rotation_radius: float = 1.0,
        radial_map: dict[str, Any] | RadialProfileMap | None = None,
        velocity_map: dict[str, Any] | VelocityEllipsoidMap | None = None,
        ball_map: dict[str, Any] | BallMap | None = None,
    ) -> None:
        self.shift = torch.as_tensor(shift, dtype=torch.float64).flatten()
        self.scale = torch.as_tensor(scale, dtype=torch.float64).flatten()
        self.asinh_center = torch.as_tensor(asinh_center, dtype=torch.float64).flatten()
        self.asinh_scale = torch.as_tensor(asinh_scale, dtype=torch.float64).flatten()
        dim = self.shift.numel()
        for name in ("scale", "asinh_center", "asinh_scale"):
            if getattr(self, name).numel() != dim:
                raise ValueError(f"{name} must have {dim} entries, like shift")
        for name in ("scale", "asinh_scale"):
            values = getattr(self, name)
            if not bool(torch.all(torch.isfinite(values) & (values > 0))):
                raise ValueError(f"{name} must be positive and finite, got {values}")
        self.asinh_axes = tuple(sorted({int(i) for i in asinh_axes}))
        if any(i < 0 or i >= dim for i in self.asinh_axes):
            raise ValueError(f"asinh_axes must lie in [0, {dim}), got {asinh_axes}")
        self._asinh_mask = torch.zeros(dim, dtype=torch.bool)
        self._asinh_mask[list(self.asinh_axes)] = True
        self.rotation_speed = float(rotation_speed)
        self.rotation_radius = float(rotation_radius)
        if not (np.isfinite(self.rotation_speed) and self.rotation_radius > 0):
            raise ValueError(
                "rotation_speed must be finite and rotation_radius positive, got "
                f"{rotation_speed} and {rotation_radius}"
            )
        if self.rotation_speed != 0 and dim != 6:
            raise ValueError(
                f"a rotation can only be subtracted from 6-D points, not {dim}-D"
            )
        if isinstance(radial_map, dict):
            radial_map = RadialProfileMap.from_dict(radial_map)
        self.radial_map = radial_map
        if isinstance(ball_map, dict):
            ball_map = BallMap.from_dict(ball_map)
        self.ball_map = ball_map
        if radial_map is not None and ball_map is not None:
            raise ValueError("give a radial_map or a ball_map, not both")
        # The map of the positions, if any: both take (..., 3) to (..., 3).
        self._position_map = radial_map if radial_map is not None else ball_map
        if self._position_map is not None and dim < 3:
            raise ValueError(f"a radial map needs 3-D positions, not {dim}-D points")
        if isinstance(velocity_map, dict):
            velocity_map = VelocityEllipsoidMap.from_dict(velocity_map)
        self.velocity_map = velocity_map
        if velocity_map is not None and dim != 6:
            raise ValueError(f"a velocity map needs 6-D points, not {dim}-D")

    @property
    def dim(self) -> int:
        """Number of axes D."""
        return self.shift.numel()

    @classmethod
    def fit(
        cls,
        data: np.ndarray | torch.Tensor,
        asinh_axes: Sequence[int] = (0, 1, 2),
        rotation: bool | None = None,
        radial_profile: bool | None = None,
        velocity_ellipsoid: bool | None = None,
        ball: BallMap | None = None,
    ) -> Standardizer:
        r"""Fit the shifts and scales to a sample.

        On asinh axes, :math:`c_i` is the median and :math:`a_i` the
        normalised median absolute deviation (:math:`1.4826\,` MAD, the
        standard deviation for a Gaussian), both robust to the heavy tails
        that make the mean and variance of a Plummer sphere's positions
        undefined. Then :math:`\mu_i` and :math:`\sigma_i` are the mean and
        standard deviation of :math:`u_i`, which are finite.

        Parameters
        ----------
        data : array or :class:`torch.Tensor`, shape (N, D)
            Finite samples.
        asinh_axes : sequence of int
            Axes with heavy tails; the positions ``(0, 1, 2)`` by default.
        rotation : bool, optional
            Subtract a mean rotation (six-dimensional data only). By default
            it is subtracted when the best-fitting rotation curve (see
            :func:`fit_rotation_curve`) removes more than
            :data:`ROTATION_VARIANCE_FRACTION` of the velocity variance: a
            rotating disc, but not a non-rotating sphere.
        radial_profile : bool, optional
            Map the positions through a
            :class:`~gala_deeppotential.radial_map.RadialProfileMap` fitted
            to them about their median; the positions then skip the asinh.
            By default (None) the map is used for six-dimensional stars that
            surround their centre, do not rotate (as for
            ``velocity_ellipsoid``) and have a density cusp
            (:meth:`~gala_deeppotential.radial_map.RadialProfileMap.is_cusped`).
        velocity_ellipsoid : bool, optional
            Map the velocities (six-dimensional data only) through a
            :class:`~gala_deeppotential.radial_map.VelocityEllipsoidMap`
            fitted to the stars about their positions' median. By default
            (None) the map is used where it is made for: six-dimensional
            stars that surround their centre (not a local volume, see
            :func:`~gala_deeppotential.radial_map.local_center`), do not
            rotate (a rotation curve removes at most
            :data:`ROTATION_VARIANCE_FRACTION` of the velocity variance) and
            are measurably anisotropic
            (:meth:`~gala_deeppotential.radial_map.VelocityEllipsoidMap.is_anisotropic`).
        ball : :class:`~gala_deeppotential.ball_map.BallMap`, optional
            The ball that holds every position (a catalogue's distance
            limit): the positions pass through it instead of a radial
            profile map and the asinh.

        Returns
        -------
        scaler : :class:`Standardizer`

        Raises
        ------
        ValueError
            If an axis is constant (it carries no density to model), or a
            position lies outside ``ball``.
        """
        y = torch.as_tensor(data).detach().to("cpu", torch.float64)
        if y.ndim != 2 or y.shape[0] < 2:
            raise ValueError(f"data must be shaped (N >= 2, D), got {tuple(y.shape)}")
        dim = y.shape[1]
        complete = torch.isfinite(y).all(dim=1)
        if not bool(complete.all()):
            # Stars with missing values (velocities without a radial velocity)
            # inform the axes they have.
            return cls._fit_incomplete(
                y,
                complete,
                asinh_axes,
                rotation,
                radial_profile,
                velocity_ellipsoid,
                ball,
            )
        spin: dict[str, Any] = {}
        removed = None
        if dim == 6 and rotation is not False:
            v0, R0, removed = fit_rotation_curve(y.numpy())
            if rotation or removed > ROTATION_VARIANCE_FRACTION:
                spin = {"rotation_speed": v0, "rotation_radius": R0}
                y = torch.cat([y[:, :3], y[:, 3:] - _rotation(y[:, :3], v0, R0)], 1)
        axes = tuple(int(i) for i in asinh_axes)
        automatic = velocity_ellipsoid is None or radial_profile is None
        sphere = automatic and _whole_sphere(y.numpy(), removed)
        if velocity_ellipsoid is None:
            ellipsoid = _automatic_velocity_map(y.numpy(), sphere)
        elif velocity_ellipsoid:
            if dim != 6:
                raise ValueError(
                    f"a velocity ellipsoid needs 6-D points, not {dim}-D; "
                    "set velocity_ellipsoid=False"
                )
            ellipsoid = VelocityEllipsoidMap.fit(y[:, :3].numpy(), y[:, 3:].numpy())
        else:
            ellipsoid = None
        if ellipsoid is not None:
            spin["velocity_map"] = ellipsoid.to_dict()
            y = torch.cat([y[:, :3], ellipsoid.forward(y[:, :3], y[:, 3:])[0]], 1)
        profile = _position_map(y, sphere, radial_profile, ball)
        if profile is not None:
            key = "radial_map" if ball is None else "ball_map"
            spin[key] = profile.to_dict()
            y = torch.cat([profile.forward(y[:, :3])[0], y[:, 3:]], 1)
            axes = tuple(i for i in axes if i >= 3)
        center = torch.zeros(dim, dtype=torch.float64)
        width = torch.ones(dim, dtype=torch.float64)
        if axes:
            median = y[:, axes].median(dim=0).values
            mad = (y[:, axes] - median).abs().median(dim=0).values * 1.4826
            # A degenerate MAD (over half the values equal) falls back to the
            # spread, so only truly constant columns are rejected below.
            spread = y[:, axes].std(dim=0)
            center[list(axes)] = median
            width[list(axes)] = torch.where(mad > 0, mad, spread)
        tmp = cls(
            torch.zeros(dim), torch.ones(dim), center, width.clamp_min(1e-300), axes
        )
        u = tmp._asinh(y)
        std = u.std(dim=0)
        constant = (y.max(dim=0).values == y.min(dim=0).values) | ~(std > 0)
        if bool(constant.any()):
            cols = constant.nonzero().flatten().tolist()
            raise ValueError(
                f"column(s) {cols} are constant: a distribution function cannot be "
                "fitted along an axis with no spread; drop or perturb them"
            )
        return cls(u.mean(dim=0), std, center, width, axes, **spin)

    @classmethod
    def _fit_incomplete(
        cls,
        y: torch.Tensor,
        complete: torch.Tensor,
        asinh_axes: Sequence[int],
        rotation: bool | None,
        radial_profile: bool | None,
        velocity_ellipsoid: bool | None,
        ball: BallMap | None,
    ) -> Standardizer:
        """:meth:`fit` where some values are NaN (velocities of stars without a
        radial velocity): the rotation from the complete stars, each axis's
        centre and scale from the stars that have it."""
        if int(complete.sum()) < 2:
            raise ValueError("fewer than two stars have every coordinate")
        params = cls.fit(
            y[complete], asinh_axes, rotation, radial_profile, velocity_ellipsoid, ball
        ).to_dict()
        center, width = params["asinh_center"], params["asinh_scale"]
        for axis in params["asinh_axes"]:
            known = y[torch.isfinite(y[:, axis]), axis]
            median = known.median()
            mad = float((known - median).abs().median()) * 1.4826
            center[axis] = float(median)
            width[axis] = mad if mad > 0 else float(known.std())
        u = cls.from_dict(params)._pre(y)
        for axis in range(y.shape[1]):
            known = u[torch.isfinite(u[:, axis]), axis]
            params["shift"][axis] = float(known.mean())
            params["scale"][axis] = float(known.std())
        return cls.from_dict(params)

    def log_abs_det_jacobian_split(
        self, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_abs_det_jacobian` in two parts, positions and velocities.

        For six-dimensional points (the rotation's shear has unit Jacobian);
        each part has shape ``(...)``.
        """
        mapped, x_log_det, v_log_det = self._mapped_with_log_jacobian(y)
        per_axis = self._asinh_log_jacobian(mapped) - torch.log(self.scale.to(y))
        half = self.dim // 2
        positions = per_axis[..., :half].sum(dim=-1) + x_log_det
        return positions, per_axis[..., half:].sum(dim=-1) + v_log_det

    def _pre(self, y: torch.Tensor) -> torch.Tensor:
        """The rotation, velocity, radial and asinh stages, :math:`y \\mapsto u`."""
        if self.rotation_speed != 0:
            spin = _rotation(y[..., :3], self.rotation_speed, self.rotation_radius)
            y = torch.cat([y[..., :3], y[..., 3:] - spin], dim=-1)
        return self._asinh(self._mapped_with_log_jacobian(y)[0])

    def _mapped_with_log_jacobian(
        self, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | float, torch.Tensor | float]:
        """``y`` with its velocities through the velocity map and its positions
        through the radial map (each if any), and the two maps' log-Jacobians
        (0 without one), from one evaluation of each."""
        v_log_det: torch.Tensor | float = 0.0
        x_log_det: torch.Tensor | float = 0.0
        if self.velocity_map is not None:
            velocities, v_log_det = self.velocity_map.forward(y[..., :3], y[..., 3:])
            y = torch.cat([y[..., :3], velocities], -1)
        if self._position_map is not None:
            positions, x_log_det = self._position_map.forward(y[..., :3])
            y = torch.cat([positions, y[..., 3:]], -1)
        return y, x_log_det, v_log_det

    def _asinh(self, y: torch.Tensor) -> torch.Tensor:
        center = self.asinh_center.to(y)
        width = self.asinh_scale.to(y)
        return torch.where(
            self._asinh_mask.to(y.device), torch.asinh((y - center) / width), y
        )

    def transform(self, y: torch.Tensor) -> torch.Tensor:
        """Map phase-space points ``(..., D)`` to scaled coordinates ``s``."""
        return (self._pre(y) - self.shift.to(y)) / self.scale.to(y)

    def inverse(self, s: torch.Tensor) -> torch.Tensor:
        """Map scaled coordinates ``(..., D)`` back to phase space ``y``."""
        u = s * self.scale.to(s) + self.shift.to(s)
        mapped = torch.sinh(u) * self.asinh_scale.to(s) + self.asinh_center.to(s)
        y = torch.where(self._asinh_mask.to(s.device), mapped, u)
        if self._position_map is not None:
            y = torch.cat([self._position_map.inverse(y[..., :3]), y[..., 3:]], -1)
        if self.velocity_map is not None:
            velocities = self.velocity_map.inverse(y[..., :3], y[..., 3:])
            y = torch.cat([y[..., :3], velocities], -1)
        if self.rotation_speed != 0:
            spin = _rotation(y[..., :3], self.rotation_speed, self.rotation_radius)
            y = torch.cat([y[..., :3], y[..., 3:] + spin], dim=-1)
        return y

    def log_abs_det_jacobian(self, y: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i \ln|\partial s_i / \partial y_i|` at ``y``, shape ``(...)``.

        Add it to a density in scaled coordinates to get the density in the
        caller's units. The rotation's shear has unit Jacobian and adds
        nothing.
        """
        mapped, x_log_det, v_log_det = self._mapped_with_log_jacobian(y)
        per_axis = self._asinh_log_jacobian(mapped).sum(dim=-1)
        return per_axis + x_log_det + v_log_det - torch.log(self.scale.to(y)).sum()

    def _asinh_log_jacobian(self, y: torch.Tensor) -> torch.Tensor:
        r"""Per axis, the asinh stage's :math:`\ln|\partial u_i/\partial y_i|`
        (zero off the asinh axes), shape ``(..., D)``."""
        width = self.asinh_scale.to(y)
        t = (y - self.asinh_center.to(y)) / width
        return torch.where(
            self._asinh_mask.to(y.device),
            -torch.log(width) - 0.5 * torch.log1p(t * t),
            torch.zeros_like(y),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters; :meth:`from_dict` rebuilds exactly."""
        out = {
            "shift": self.shift.tolist(),
            "scale": self.scale.tolist(),
            "asinh_center": self.asinh_center.tolist(),
            "asinh_scale": self.asinh_scale.tolist(),
            "asinh_axes": list(self.asinh_axes),
        }
        if self.rotation_speed != 0:
            out["rotation_speed"] = self.rotation_speed
            out["rotation_radius"] = self.rotation_radius
        if self.radial_map is not None:
            out["radial_map"] = self.radial_map.to_dict()
        if self.ball_map is not None:
            out["ball_map"] = self.ball_map.to_dict()
        if self.velocity_map is not None:
            out["velocity_map"] = self.velocity_map.to_dict()
        return out

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> Standardizer:
        """Rebuild a :class:`Standardizer` from :meth:`to_dict` output."""
        return cls(**params)

    def __repr__(self) -> str:
        spin = (
            f", rotation_speed={self.rotation_speed:.4g}" if self.rotation_speed else ""
        )
        maps = ", radial_map" if self.radial_map is not None else ""
        maps += ", ball_map" if self.ball_map is not None else ""
        maps += ", velocity_map" if self.velocity_map is not None else ""
        return f"Standardizer(dim={self.dim}, asinh_axes={self.asinh_axes}{spin}{maps})"


#: The fraction of the velocity variance a fitted rotation curve must remove
#: for :meth:`Standardizer.fit` to subtract it. A non-rotating sphere's
#: fitted rotation removes ~1/N of it; the rotating populations of
#: :mod:`~gala_deeppotential.mocks` 7% (hot) and 90% (a cold disc).
ROTATION_VARIANCE_FRACTION = 0.01
# Core radii tried by the rotation-curve fit: from the 0.1% quantile of the
# stars' cylindrical radii to 30 times their 90% quantile, where the curve is
# solid-body rotation (v0 / R0 = Ω) over the stars to 0.1%, as in a bar's
# frame.
_CORE_QUANTILES = (0.001, 0.9)
_CORE_STRETCH = 30.0
_N_CORES = 64


def _rotation(x: torch.Tensor, v0: float, R0: float) -> torch.Tensor:
    """The rotation field :math:`v_0 (-y, x, 0)/\\sqrt{R^2 + R_0^2}` at positions x."""
    factor = v0 / torch.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2 + R0**2)
    return torch.stack(
        [-x[..., 1] * factor, x[..., 0] * factor, torch.zeros_like(factor)], dim=-1
    )


def _whole_sphere(data: np.ndarray, removed: float | None) -> bool:
    """Whether stars ``(N, 6)`` surround their centre and do not rotate, as the
    radial maps assume (``removed``: the rotation curve's fraction of the
    velocity variance, if fitted already)."""
    if data.shape[1] != 6 or local_center(data[:, :3]) is not None:
        return False
    if removed is None:
        removed = fit_rotation_curve(data)[2]
    return removed <= ROTATION_VARIANCE_FRACTION


def _automatic_velocity_map(
    data: np.ndarray, sphere: bool
) -> VelocityEllipsoidMap | None:
    """The velocity map ``Standardizer.fit`` uses by default for stars ``(N, 6)``
    (``sphere``: whether they are a whole, non-rotating sphere), or None."""
    if not sphere:
        return None
    try:
        ellipsoid = VelocityEllipsoidMap.fit(data[:, :3], data[:, 3:])
    except ValueError:  # too few stars, or a shell without spread
        return None
    return ellipsoid if ellipsoid.is_anisotropic(len(data)) else None


def _position_map(
    y: torch.Tensor, sphere: bool, radial_profile: bool | None, ball: BallMap | None
) -> RadialProfileMap | BallMap | None:
    """The map of the positions ``Standardizer.fit`` uses for stars ``y``
    (N, D): the ball's, else a radial profile's as ``radial_profile`` says."""
    if ball is not None:
        outside = ~ball.contains(y[:, :3].numpy())
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} positions lie outside {ball}: a ball map "
                "needs every star inside it; give the ball that holds the "
                "catalogue, or none"
            )
        return ball
    if radial_profile is None:
        return _automatic_radial_map(y.numpy(), sphere)
    return RadialProfileMap.fit(y[:, :3].numpy()) if radial_profile else None


def _automatic_radial_map(data: np.ndarray, sphere: bool) -> RadialProfileMap | None:
    """The radial profile map ``Standardizer.fit`` uses by default for stars
    ``(N, 6)`` (``sphere`` as above), or None: only for a cusp."""
    if not sphere:
        return None
    try:
        profile = RadialProfileMap.fit(data[:, :3])
    except ValueError:  # fewer than 16 stars off the centre
        return None
    return profile if profile.is_cusped(len(data)) else None


def fit_rotation_curve(data: np.ndarray) -> tuple[float, float, float]:
    r"""The rotation curve that best fits the stars' azimuthal velocities.

    The curve is :math:`v_0 R/\sqrt{R^2 + R_0^2}`.
    Least squares over the stars: for each trial core radius :math:`R_0`
    (log-spaced between quantiles of the stars' cylindrical radii)
    :math:`v_0` is linear; the best pair wins.

    Parameters
    ----------
    data : :class:`numpy.ndarray`, shape (N, 6)
        Positions and velocities; the z axis through the origin is the axis.

    Returns
    -------
    v0 : float
        [speed], negative for rotation with :math:`L_z < 0`.
    R0 : float
        [length].
    removed : float
        How much more of the velocity variance the rotation removes than the
        mean velocity does, as a fraction of the variance; 0 when it removes
        less (a cloud in bulk motion rather than a rotating system).
    """
    x, v = data[:, :3], data[:, 3:]
    R = np.hypot(x[:, 0], x[:, 1])
    moving = R > 0
    v_phi = np.zeros(len(R))
    v_phi[moving] = (x[moving, 0] * v[moving, 1] - x[moving, 1] * v[moving, 0]) / R[
        moving
    ]
    lo, hi = np.maximum(np.quantile(R, _CORE_QUANTILES), 1e-12)
    cores = np.geomspace(lo, _CORE_STRETCH * hi, _N_CORES)
    best = (0.0, float(cores[0]), 0.0)
    for R0 in cores:
        shape = R / np.sqrt(R**2 + R0**2)
        v0 = float(shape @ v_phi / (shape @ shape))
        gain = v0**2 * float(shape @ shape)  # the drop in the sum of v_phi^2
        if gain > best[2]:
            best = (v0, float(R0), gain)
    # The per-axis standardization removes the mean velocity anyway; a
    # rotation is worth it only where it explains more than that does.
    variance = float(np.sum((v - v.mean(axis=0)) ** 2))
    bulk = len(v) * float(np.sum(v.mean(axis=0) ** 2))
    if variance <= 0 or best[2] <= bulk:
        return best[0], best[1], 0.0
    return best[0], best[1], (best[2] - bulk) / variance
