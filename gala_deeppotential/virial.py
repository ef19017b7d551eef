r"""The tracer virial theorem: the overall strength of the forces, from the stars.

A stationary population obeys every moment of the collisionless Boltzmann
equation. Multiplied by :math:`w = \psi(|\vec{x} - \vec{c}|)\,
(\vec{x} - \vec{c})\cdot\vec{v}` and integrated over phase space, it gives
the virial theorem of a tracer population in a window :math:`\psi`,

.. math::

    \left\langle \psi\, (\vec{x} - \vec{c})\cdot\nabla\Phi \right\rangle =
    \left\langle \psi\, v^2 + \psi'(\varrho)\,
    \frac{\left[(\vec{x} - \vec{c})\cdot\vec{v}\right]^2}{\varrho}
    \right\rangle,
    \qquad \varrho = |\vec{x} - \vec{c}|,

averages over the stars. Unlike the pointwise residual of
:mod:`~gala_deeppotential.cbe`, it needs no gradients of the DF, only the
stars' positions and velocities, so the noise of a fitted DF's gradients,
which makes a fit of Eq. 3 underestimate the forces, does not enter. It holds
for any centre :math:`\vec{c}` and any smooth window that vanishes outside
the region where the sample is complete, and only there: :func:`calibrate`
applies it where its checks say so, and declines with a
:class:`VirialWarning` otherwise.
"""

from __future__ import annotations

__all__ = [
    "CHECK_WINDOW",
    "VIRIAL_WINDOW",
    "VirialOptions",
    "VirialWarning",
    "apply_scale",
    "calibrate",
    "virial_calibration",
    "virial_scale",
]

import copy
import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .options import resolve_options
from .potential import PotentialFit, as_float64, check_rows, fix_gauge

#: Radii of the default window, as quantiles of the stars' distances from the
#: window's centre: :math:`\psi` rises smoothly from 0 at the first to 1 at
#: the second, and falls back to 0 between the third and the fourth. The
#: innermost 10% of the stars are left out because a fitted Φ's errors there
#: are local (an unresolved cusp), not the overall scale the theorem corrects.
VIRIAL_WINDOW = (0.1, 0.3, 0.9, 0.99)

#: A second window, inside the first, that :func:`calibrate` compares with
#: it: where the sample is complete the two agree, and a scale that changes
#: with the window means that the theorem's assumption fails.
CHECK_WINDOW = (0.1, 0.3, 0.6, 0.75)

#: Largest window-weighted mean force, as a fraction of the mean magnitude,
#: that :func:`calibrate` accepts about the stars' own median. A sample about
#: the centre of its system is pulled inwards from every side (0.001-0.003
#: for 2^17 Plummer stars and their exact forces, 0.01-0.02 for a short fit);
#: one off the centre is pulled one way (0.87 for the stars within 1 b of a
#: point 1.5 b from a Plummer sphere's centre, 0.94 within 1.5 b of a point
#: at 3 b). The forces of a fit far from converged can pull one way too (up
#: to 0.6 measured), which the warning says.
MAX_DIPOLE = 0.5

#: The two windows' scales may differ by this fraction, plus four standard
#: errors, before :func:`calibrate` declines.
WINDOW_TOLERANCE = 0.1

#: A scale beyond this factor either way is declined: the calibration corrects
#: a bias of a few per cent, and a factor of two means a failed fit or a
#: sample that breaks the theorem's assumptions.
MAX_SCALE = 2.0

#: A calibrated fit whose scale differs from 1 by more than this has not
#: converged; :func:`calibrate` applies the scale but warns.
CONVERGED_SCALE = 0.15


class VirialWarning(UserWarning):
    """The virial calibration was declined, or found an unconverged fit."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class VirialOptions:
    """Where :func:`calibrate` applies the virial theorem.

    Parameters
    ----------
    center : sequence of 3 float, optional
        Centre of the window [length, in the units of the fit]. By default
        the stars' median position, which is right for a sample of a whole
        system; the calibration then declines a sample that is not centred on
        its system (a local or heliocentric volume).
    radius : float, optional
        The sample is complete within this distance of ``center`` [length]:
        the window's radii are quantiles of the stars inside it. Give it with
        ``center`` for a catalogue cut to a sphere, such as a heliocentric
        volume.
    window : tuple of 4 float
        The window's radii as quantiles of the stars' distances from its
        centre (see :data:`VIRIAL_WINDOW`).
    """

    center: tuple[float, float, float] | None = None
    radius: float | None = None
    window: tuple[float, float, float, float] = VIRIAL_WINDOW

    def __post_init__(self) -> None:
        if self.center is not None:
            center = tuple(float(c) for c in np.ravel(self.center))
            if len(center) != 3 or not np.all(np.isfinite(center)):
                raise ValueError(
                    f"center must be three finite numbers, got {self.center!r}"
                )
            object.__setattr__(self, "center", center)
        if self.radius is not None:
            if not float(self.radius) > 0:
                raise ValueError(f"radius must be positive, got {self.radius!r}")
            object.__setattr__(self, "radius", float(self.radius))
        object.__setattr__(self, "window", tuple(float(q) for q in self.window))
        _check_window(self.window)


def virial_scale(
    x: np.ndarray,
    v: np.ndarray,
    grad_phi: np.ndarray,
    *,
    center: np.ndarray | None = None,
    radius: float | None = None,
    window: tuple[float, float, float, float] = VIRIAL_WINDOW,
) -> dict[str, Any]:
    r"""The factor by which :math:`\nabla\Phi` must be scaled to obey the virial law.

    Parameters
    ----------
    x, v : array_like, shape ``(N, 3)``
        Positions [length] and velocities [length/time] of the stars, in an
        inertial frame in which the population is stationary.
    grad_phi : array_like, shape ``(N, 3)``
        :math:`\nabla\Phi` at the stars [length/time²], in the same units.
    center : array_like, shape ``(3,)``, optional
        The window's centre :math:`\vec{c}`; the stars' median position by
        default.
    radius : float, optional
        Take the window's quantiles over the stars within ``radius`` of
        :math:`\vec{c}` only, where the sample is complete.
    window : (float, float, float, float)
        Radii of the window :math:`\psi`, as quantiles of the stars'
        distances from :math:`\vec{c}`: it rises from 0 at the first to 1 at
        the second and falls back to 0 between the third and the fourth
        (quintic smoothsteps), so neither the centre nor the outskirts, where
        a catalogue is rarely complete, count.

    Returns
    -------
    result : dict
        ``scale``, the ratio of the two sides of the theorem (kinetic over
        virial term), which is 1 for the true potential up to sampling noise,
        if the sample is complete inside the window; ``error``, its standard
        error (delta method); ``n_stars``; ``center`` and ``radii``, the
        window's centre and four radii [length]; and ``dipole``, the length
        of the window-weighted mean of :math:`\nabla\Phi` over its mean
        length, near 0 about the centre of a system and near 1 far from it.

    Raises
    ------
    ValueError
        If the arrays disagree in shape, hold NaN or inf, the window's
        quantiles are not increasing within [0, 1], no star lies within
        ``radius``, or :math:`\nabla\Phi` does not point outwards on average
        (no attraction to be scaled).

    Examples
    --------
    The stars of a Plummer sphere obey it in its own potential:

    >>> from gala_deeppotential.mocks import PlummerTruth
    >>> truth = PlummerTruth()
    >>> x, v = truth.sample(2**14, seed=1)
    >>> result = virial_scale(x, v, truth.grad_phi(x))
    >>> abs(result["scale"] - 1) < 3 * result["error"]
    True
    """
    x, v, grad_phi = (np.asarray(a, dtype=np.float64) for a in (x, v, grad_phi))
    for name, a in (("v", v), ("grad_phi", grad_phi)):
        if a.shape != x.shape:
            raise ValueError(f"{name} has shape {a.shape}, x has {x.shape}")
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x, v and grad_phi must have shape (N, 3), got {x.shape}")
    if not all(np.isfinite(a).all() for a in (x, v, grad_phi)):
        raise ValueError("x, v and grad_phi must be finite; drop the rows with NaN")
    quantiles = _check_window(window)
    center = np.median(x, axis=0) if center is None else np.asarray(center, float)
    offset = x - center
    distance = np.linalg.norm(offset, axis=1)
    inside = distance if radius is None else distance[distance < radius]
    if not inside.size:
        raise ValueError(f"no star lies within radius={radius} of {center.tolist()}")
    radii = np.quantile(inside, quantiles)
    psi, dpsi = _window(distance, radii)
    radial_flux = np.divide(
        np.sum(offset * v, axis=1) ** 2,
        distance,
        out=np.zeros_like(distance),
        where=distance > 0,
    )
    kinetic = psi * np.sum(v**2, axis=1) + dpsi * radial_flux
    virial = psi * np.sum(offset * grad_phi, axis=1)
    k_mean, w_mean = kinetic.mean(), virial.mean()
    if not w_mean > 0:
        raise ValueError(
            "grad_phi does not point away from the window's centre on average, "
            "so the potential attracts nothing there and has no force scale to "
            "correct: check the sign and units of grad_phi, and, for a sample "
            "that is not a complete sphere about its system's centre (a local "
            "or heliocentric volume), give the centre and radius of the volume "
            "where it is complete"
        )
    scale = k_mean / w_mean
    spread = np.std(kinetic / k_mean - virial / w_mean)
    pull = np.linalg.norm(np.sum(psi[:, None] * grad_phi, axis=0))
    return {
        "scale": float(scale),
        "error": float(scale * spread / np.sqrt(len(x))),
        "n_stars": len(x),
        "center": center.tolist(),
        "radii": radii.tolist(),
        "dipole": float(pull / np.sum(psi * np.linalg.norm(grad_phi, axis=1))),
    }


def calibrate(
    fit: PotentialFit,
    x: np.ndarray,
    v: np.ndarray,
    options: VirialOptions | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> PotentialFit:
    r"""Scale a fitted potential so that the stars obey the virial theorem.

    Noise in a fitted DF's :math:`\nabla_v \ln f`, which multiplies
    :math:`\nabla\Phi` in the stationarity residual, biases the forces of
    :func:`~gala_deeppotential.fit_potential` low (regression dilution). The
    virial theorem needs only the stars, so :func:`virial_scale` measures the
    overall strength of the forces without that bias, to about
    :math:`1/\sqrt{N}`, and this multiplies :math:`\Phi` by it and fixes the
    gauge again.

    The theorem holds only where the sample is complete inside the window,
    so the scale is applied only if

    * the window is about the centre of the system: with no ``center``, the
      stars' median position, where the window-weighted mean force must be
      small (``dipole`` at most :data:`MAX_DIPOLE`), or a ``center`` and
      ``radius`` that the caller states;
    * the scale lies within a factor :data:`MAX_SCALE` of 1;
    * the scale does not change with the window: those of the default window
      and of :data:`CHECK_WINDOW` agree within :data:`WINDOW_TOLERANCE` of
      each other, plus four standard errors.

    Otherwise it is declined with a :class:`VirialWarning` that says why,
    and the fit is returned unscaled. A scale applied that differs from 1
    by more than :data:`CONVERGED_SCALE` also warns: the fit has not
    converged.

    Parameters
    ----------
    fit : :class:`~gala_deeppotential.potential.PotentialFit`
        The fit to calibrate; it is not changed.
    x, v : array_like, shape (N, 3)
        Positions and velocities of the stars the DF was fitted to, in the
        units of the fit.
    options : :class:`VirialOptions` or dict, optional
        The window's centre, radius and quantiles.
    **overrides
        Fields of :class:`VirialOptions`.

    Returns
    -------
    fit : :class:`~gala_deeppotential.potential.PotentialFit`
        A new fit: scaled, or the same network if the scale was declined.
        Its ``virial`` records ``applied``, ``reason`` (why not, or None),
        and the :func:`virial_scale` results ``scale``, ``error``,
        ``dipole``, ``center``, ``radii`` and ``check_scale`` (that of
        :data:`CHECK_WINDOW`), where they could be measured.

    Raises
    ------
    ValueError
        For stars that are not two finite (N, 3) arrays of at least
        :data:`~gala_deeppotential.potential.MIN_POINTS` rows.
    """
    options = resolve_options(VirialOptions, options, **overrides)
    x, v = _stars(x, v)
    grad = _network_gradient(fit, x)
    record = virial_calibration(x, v, grad, options)
    if record["reason"] is not None:
        warnings.warn(
            f"virial calibration not applied: {record['reason']}",
            VirialWarning,
            stacklevel=2,
        )
        return dataclasses.replace(fit, virial=record)
    record["applied"] = True
    if abs(record["scale"] - 1) > CONVERGED_SCALE:
        warnings.warn(unconverged_message(record), VirialWarning, stacklevel=2)
    return apply_scale(fit, record)


def apply_scale(fit: PotentialFit, record: Mapping[str, Any]) -> PotentialFit:
    """A copy of ``fit`` with its forces multiplied by ``record["scale"]``.

    The gauge is fixed again as the fit fixed it, and ``record`` becomes the
    copy's ``virial``: :func:`calibrate` applies its own measurement this
    way, and :func:`~gala_deeppotential.uncertainty.potential_bands` applies
    a main fit's scale to the fits it compares with it.
    """
    net = copy.deepcopy(fit.net)
    net.scale_forces(record["scale"])
    gauge = fix_gauge(net, fit.gauge["gauge"], fit.gauge.get("r_edge", 0.0))
    return dataclasses.replace(fit, net=net, gauge=gauge, virial=dict(record))


def unconverged_message(record: Mapping[str, Any]) -> str:
    """What to say of an applied scale far from 1: the fit has not converged."""
    return (
        f"the forces needed scaling by {record['scale']:.3f} ± "
        f"{record['error']:.3f} to obey the stars' virial theorem, more than "
        f"{CONVERGED_SCALE:.0%} away from 1: the fit has not converged, and its "
        "forces are unreliable even after the scaling. Train longer: more flow "
        "epochs (DFOptions.epochs, deep-potential fit --epochs) and Φ steps "
        "(PotentialOptions.n_steps, --phi-steps), or more stars"
    )


def virial_calibration(
    x: np.ndarray,
    v: np.ndarray,
    grad_phi: np.ndarray,
    options: VirialOptions | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    r"""The virial scale of :math:`\nabla\Phi` at the stars, and whether it holds.

    What :func:`calibrate` decides, for any forces: :func:`virial_scale` in
    the options' window and in :data:`CHECK_WINDOW`, and the reason to
    decline the scale, if its checks find one (see :func:`calibrate`).

    Parameters
    ----------
    x, v, grad_phi : array_like, shape (N, 3)
        As for :func:`virial_scale`.
    options : :class:`VirialOptions` or dict, optional
        The window's centre, radius and quantiles.
    **overrides
        Fields of :class:`VirialOptions`.

    Returns
    -------
    record : dict
        ``applied`` (False: nothing is applied here), ``reason`` (None where
        the scale may be applied, else why not), and, where they could be
        measured, the :func:`virial_scale` results of the window and
        ``check_scale`` and ``check_error`` of :data:`CHECK_WINDOW`.

    Examples
    --------
    A sphere of stars cut about a point off the centre of a Plummer sphere:

    >>> from gala_deeppotential.mocks import PlummerTruth
    >>> truth = PlummerTruth()
    >>> x, v = truth.sample(2**16, seed=1)
    >>> local = np.linalg.norm(x - [1.5, 0, 0], axis=1) < 1
    >>> record = virial_calibration(x[local], v[local], truth.grad_phi(x[local]))
    >>> record["reason"].split(" (")[0]
    'the forces in its window all pull one way'
    """
    options = resolve_options(VirialOptions, options, **overrides)
    common = {"center": options.center, "radius": options.radius}
    record: dict[str, Any] = {"applied": False, "reason": None}
    try:
        main = virial_scale(x, v, grad_phi, window=options.window, **common)
        check = virial_scale(x, v, grad_phi, window=CHECK_WINDOW, **common)
    except ValueError as err:
        record["reason"] = str(err)
        return record
    record.update(main)
    record["check_scale"] = check["scale"]
    record["check_error"] = check["error"]
    record["reason"] = _reason_to_decline(main, check, options)
    return record


def _reason_to_decline(
    main: dict[str, Any], check: dict[str, Any], options: VirialOptions
) -> str | None:
    """Why the scale of ``main`` may not be applied, or None if it may."""
    remedy = (
        "give the centre and radius of the volume where the sample is complete "
        "with VirialOptions(center=, radius=) or --virial-center and "
        "--virial-radius, or turn the calibration off with virial=False or "
        "--no-virial"
    )
    unconverged = "train longer: more flow epochs and Φ steps"
    scale, error = main["scale"], main["error"]
    if options.center is None and main["dipole"] > MAX_DIPOLE:
        return (
            f"the forces in its window all pull one way (dipole {main['dipole']:.2f}"
            f" > {MAX_DIPOLE}): either the fit has not converged ({unconverged}), "
            "or the stars are not a sample about their system's centre, like a "
            "local or heliocentric volume, and the theorem needs a window where "
            f"the sample is complete: {remedy}"
        )
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return (
            f"a scale of {scale:.3f} ± {error:.3f} is no calibration: either the "
            f"fit has not converged ({unconverged}), or the sample is not "
            f"complete inside the window: {remedy}"
        )
    ratio = scale / check["scale"]
    spread = np.hypot(error / scale, check["error"] / check["scale"])
    if abs(ratio - 1) > WINDOW_TOLERANCE + 4 * spread:
        return (
            f"the scale changes with the window ({scale:.3f} ± {error:.3f}, and "
            f"{check['scale']:.3f} ± {check['error']:.3f} in the inner stars): "
            "either the fit has not converged and its forces have the wrong "
            f"radial profile ({unconverged}), or the sample is not complete "
            f"inside the window: {remedy}"
        )
    return None


def _stars(x: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
    """The stars as float64 arrays, validated."""
    arrays = [as_float64(x), as_float64(v)]
    check_rows(("stars' x", "stars' v"), arrays, "stars for the virial calibration")
    return arrays[0], arrays[1]


def _network_gradient(fit: PotentialFit, x: np.ndarray) -> np.ndarray:
    r""":math:`\nabla\Phi` of the fitted network at ``x``, in float64."""
    net64 = copy.deepcopy(fit.net).double()
    grad = np.empty_like(x)
    for rows in np.array_split(np.arange(len(x)), max(len(x) // 2**15, 1)):
        grad[rows] = net64.value_and_grad(torch.from_numpy(x[rows]))[1].numpy()
    return grad


def _check_window(window: Any) -> np.ndarray:
    quantiles = np.asarray(window, dtype=np.float64)
    if quantiles.shape != (4,) or not (
        0 <= quantiles[0] and np.all(np.diff(quantiles) > 0) and quantiles[3] <= 1
    ):
        raise ValueError(
            f"window must be four increasing quantiles in [0, 1], got {window}"
        )
    return quantiles


def _window(distance: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The window :math:`\\psi` at ``distance`` and its derivative."""
    rise, drise = _smoothstep(distance, radii[0], radii[1])
    fall, dfall = _smoothstep(distance, radii[3], radii[2])
    return rise * fall, drise * fall + rise * dfall


def _smoothstep(
    radius: np.ndarray, zero: float, one: float
) -> tuple[np.ndarray, np.ndarray]:
    """A quintic step from 0 at ``zero`` to 1 at ``one``, and its derivative."""
    t = np.clip((radius - zero) / (one - zero), 0.0, 1.0)
    return t**3 * (10 - 15 * t + 6 * t**2), 30 * t**2 * (1 - t) ** 2 / (one - zero)
