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
the region where the sample is complete.
"""

from __future__ import annotations

__all__ = ["VIRIAL_WINDOW", "virial_scale"]

import numpy as np

#: Radii of the default window, as quantiles of the stars' distances from
#: their median position: :math:`\psi` rises smoothly from 0 at the first to 1
#: at the second, and falls back to 0 between the third and the fourth. The
#: innermost 10% of the stars are left out because a fitted Φ's errors there
#: are local (an unresolved cusp), not the overall scale the theorem corrects:
#: counting them scaled a Hernquist sphere's forces 1.6% too far
#: (``docs/benchmarks.md``).
VIRIAL_WINDOW = (0.1, 0.3, 0.9, 0.99)


def virial_scale(
    x: np.ndarray,
    v: np.ndarray,
    grad_phi: np.ndarray,
    *,
    window: tuple[float, float, float, float] = VIRIAL_WINDOW,
) -> dict[str, float]:
    r"""The factor by which :math:`\nabla\Phi` must be scaled to obey the virial law.

    Parameters
    ----------
    x, v : array_like, shape ``(N, 3)``
        Positions [length] and velocities [length/time] of the stars, in an
        inertial frame in which the population is stationary.
    grad_phi : array_like, shape ``(N, 3)``
        :math:`\nabla\Phi` at the stars [length/time²], in the same units.
    window : (float, float, float, float)
        Radii of the window :math:`\psi`, as quantiles of the stars'
        distances from their median position :math:`\vec{c}`: it rises from 0
        at the first to 1 at the second and falls back to 0 between the third
        and the fourth (quintic smoothsteps), so neither the centre nor the
        outskirts, where a catalogue is rarely complete, count.

    Returns
    -------
    result : dict
        ``scale``, the ratio of the two sides of the theorem (kinetic over
        virial term), which is 1 for the true potential up to sampling noise;
        ``error``, its standard error (delta method); ``n_stars``; and
        ``radii``, the window's four radii [length].

    Raises
    ------
    ValueError
        If the arrays disagree in shape, hold NaN or inf, the window's
        quantiles are not increasing within [0, 1], or :math:`\nabla\Phi` does
        not point outwards on average (no attraction to be scaled).

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
    quantiles = np.asarray(window, dtype=np.float64)
    if quantiles.shape != (4,) or not (
        0 <= quantiles[0] and np.all(np.diff(quantiles) > 0) and quantiles[3] <= 1
    ):
        raise ValueError(
            f"window must be four increasing quantiles in [0, 1], got {window}"
        )
    offset = x - np.median(x, axis=0)
    radius = np.linalg.norm(offset, axis=1)
    radii = np.quantile(radius, quantiles)
    rise, drise = _smoothstep(radius, radii[0], radii[1])
    fall, dfall = _smoothstep(radius, radii[3], radii[2])
    psi = rise * fall
    dpsi = drise * fall + rise * dfall
    radial_flux = np.divide(
        np.sum(offset * v, axis=1) ** 2,
        radius,
        out=np.zeros_like(radius),
        where=radius > 0,
    )
    kinetic = psi * np.sum(v**2, axis=1) + dpsi * radial_flux
    virial = psi * np.sum(offset * grad_phi, axis=1)
    k_mean, w_mean = kinetic.mean(), virial.mean()
    if not w_mean > 0:
        raise ValueError(
            "grad_phi does not point away from the centre on average, so the "
            "potential attracts nothing and has no force scale to correct; "
            "check the sign and units of grad_phi"
        )
    scale = k_mean / w_mean
    spread = np.std(kinetic / k_mean - virial / w_mean)
    return {
        "scale": float(scale),
        "error": float(scale * spread / np.sqrt(len(x))),
        "n_stars": len(x),
        "radii": radii.tolist(),
    }


def _smoothstep(
    radius: np.ndarray, zero: float, one: float
) -> tuple[np.ndarray, np.ndarray]:
    """A quintic step from 0 at ``zero`` to 1 at ``one``, and its derivative."""
    t = np.clip((radius - zero) / (one - zero), 0.0, 1.0)
    return t**3 * (10 - 15 * t + 6 * t**2), 30 * t**2 * (1 - t) ** 2 / (one - zero)
