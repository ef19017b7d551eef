"""Unit vectors on the sphere: a deterministic lattice and isotropic random draws."""

from __future__ import annotations

__all__ = ["random_directions", "sphere_directions"]

import numpy as np


def sphere_directions(n: int) -> np.ndarray:
    r"""``n`` nearly uniform unit vectors (a Fibonacci lattice), shape ``(n, 3)``.

    Deterministic, so angle averages of :math:`\Phi_\theta` over spheres (the
    gauge, the spherical exports) are reproducible.
    """
    k = np.arange(n) + 0.5
    cos_theta = 1 - 2 * k / n
    sin_theta = np.sqrt(1 - cos_theta**2)
    phi = np.pi * (1 + np.sqrt(5)) * k
    return np.stack(
        [sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1
    )


def random_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    r"""``n`` isotropic random unit vectors, shape ``(n, 3)``.

    Uniform in :math:`\cos\theta` and :math:`\phi`, two uniform draws per
    vector.
    """
    cos_theta = 2 * rng.random(n) - 1
    sin_theta = np.sqrt(1 - cos_theta**2)
    phi = 2 * np.pi * rng.random(n)
    return np.stack(
        [sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1
    )
