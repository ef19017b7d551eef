r"""Is the snapshot stationary? The Boltzmann residual at the stars, by region.

The method assumes that the stars' DF is stationary. A fitted potential lets
the package test that star by star: the collisionless Boltzmann equation gives

.. math::

    \frac{\partial \ln f}{\partial t} = -\vec v\cdot\nabla_x \ln f
        + \nabla\Phi\cdot\nabla_v \ln f

at each star (with the rotation term for a pattern speed, see
:func:`~gala_deeppotential.cbe.stationarity_residual`). Averaged over the
stars of a region it is the rate at which the region's number density
changes, :math:`\langle\partial_t \ln f\rangle = \partial_t \ln n`, since the
stars sample f: zero for a stationary DF, and of either sign where stars
stream in or out (a kicked or perturbed population, a phase-mixing stream).

Its noise has two parts, both measured: the scatter of the residual over the
region's stars (sampling), and the scatter of the region's mean among the
flow members, each an independent model of the DF (the flows' error). Their
sum in quadrature is the level a stationary sample of the same size reaches;
a region whose mean departs from 0 by more than :data:`SIGNIFICANCE` times it
is flagged.
"""

from __future__ import annotations

__all__ = [
    "MIN_STARS_PER_REGION",
    "SIGNIFICANCE",
    "StationarityMap",
    "stationarity_map",
]

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .cbe import stationarity_terms

#: A region departs from stationarity when its mean rate exceeds this many
#: times its noise.
SIGNIFICANCE = 5.0
#: Regions with fewer stars are not scored.
MIN_STARS_PER_REGION = 50
# Default bins: radial and vertical edges at quantiles of the stars, and a
# square grid in (x, y) over the central 98% of them.
_N_R_BINS = 8
_N_Z_BINS = 6
_N_XY_BINS = 8
_PLANES = {"Rz": ("R", "z"), "xy": ("x", "y")}


@dataclass
class StationarityMap:
    r"""The stationarity residual at each star, and its summary by region.

    Attributes
    ----------
    x : :class:`numpy.ndarray`, shape (N, 3)
        Positions of the stars [length unit of the fit].
    rate : :class:`numpy.ndarray`, shape (N,)
        :math:`\partial \ln f/\partial t` at each star from the ensemble DF
        [1 / time unit of the fit].
    member_rate : :class:`numpy.ndarray`, shape (K, N)
        The same from each flow member's DF.
    relative : :class:`numpy.ndarray`, shape (N,)
        The rate over the sum of the sizes of its terms, in [-1, 1]: 0 for
        a star where the DF is stationary, :math:`\pm 1` where one term
        dominates.
    units : dict of str to str
        ``length`` and ``time``: the units of ``x`` and ``rate`` (None when
        dimensionless).
    """

    x: np.ndarray
    rate: np.ndarray
    member_rate: np.ndarray
    relative: np.ndarray
    units: dict[str, str | None]

    def coordinates(self, plane: str) -> tuple[np.ndarray, np.ndarray]:
        """The stars' two coordinates in ``plane``: "Rz" (R, z) or "xy"."""
        if plane not in _PLANES:
            raise ValueError(f"plane must be 'Rz' or 'xy', got {plane!r}")
        if plane == "Rz":
            return np.hypot(self.x[:, 0], self.x[:, 1]), self.x[:, 2]
        return self.x[:, 0], self.x[:, 1]

    def default_edges(self, plane: str) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges in ``plane``: quantiles of R and z, or a square grid in (x, y)."""
        a, b = self.coordinates(plane)
        if plane == "Rz":
            return (
                np.quantile(a, np.linspace(0, 1, _N_R_BINS + 1)),
                np.quantile(b, np.linspace(0, 1, _N_Z_BINS + 1)),
            )
        half = float(np.quantile(np.maximum(np.abs(a), np.abs(b)), 0.98))
        edges = np.linspace(-half, half, _N_XY_BINS + 1)
        return edges, edges

    def by_region(
        self,
        plane: str = "Rz",
        edges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        r"""The mean rate, its noise and its significance in each region of ``plane``.

        Parameters
        ----------
        plane : {"Rz", "xy"}
            Cylindrical radius and height, or the Galactic plane.
        edges : pair of arrays, optional
            Bin edges of the two coordinates; by default
            :meth:`default_edges`.

        Returns
        -------
        regions : dict
            ``edges`` (the two arrays), and arrays of shape (nA, nB): ``n``
            (stars), ``rate`` (:math:`\partial_t \ln n`, the mean rate),
            ``noise`` (its standard error: sampling and the flow members'
            scatter, in quadrature), ``z`` (rate / noise) and
            ``median_abs_relative``. Regions with fewer than
            :data:`MIN_STARS_PER_REGION` stars hold NaN.
        """
        edges = self.default_edges(plane) if edges is None else edges
        a, b = self.coordinates(plane)
        ia = np.digitize(a, edges[0]) - 1
        ib = np.digitize(b, edges[1]) - 1
        shape = (len(edges[0]) - 1, len(edges[1]) - 1)
        out = {key: np.full(shape, np.nan) for key in ("rate", "noise", "z")}
        out["median_abs_relative"] = np.full(shape, np.nan)
        out["n"] = np.zeros(shape, dtype=int)
        for i in range(shape[0]):
            for j in range(shape[1]):
                sel = (ia == i) & (ib == j)
                n = int(sel.sum())
                out["n"][i, j] = n
                if n < MIN_STARS_PER_REGION:
                    continue
                rate = float(self.rate[sel].mean())
                sampling = float(self.rate[sel].std(ddof=1)) / np.sqrt(n)
                members = self.member_rate[:, sel].mean(axis=1)
                spread = float(members.std(ddof=1)) if len(members) > 1 else 0.0
                noise = float(np.hypot(sampling, spread))
                out["rate"][i, j] = rate
                out["noise"][i, j] = noise
                out["z"][i, j] = rate / noise
                out["median_abs_relative"][i, j] = float(
                    np.median(np.abs(self.relative[sel]))
                )
        out["edges"] = edges
        return out

    def significant(
        self,
        plane: str = "Rz",
        edges: tuple[np.ndarray, np.ndarray] | None = None,
        threshold: float = SIGNIFICANCE,
    ) -> list[dict[str, Any]]:
        """The regions whose mean rate departs from 0 by more than ``threshold``
        times its noise, most significant first.

        Returns
        -------
        regions : list of dict
            ``region`` (a sentence naming its bounds), ``bounds`` (the two
            coordinate ranges), ``n``, ``rate``, ``noise`` and ``z``.
        """
        table = self.by_region(plane, edges)
        names = _PLANES[plane]
        unit = self.units.get("length")
        found = []
        flagged = np.abs(np.nan_to_num(table["z"])) > threshold
        for i, j in zip(*np.nonzero(flagged), strict=True):
            bounds = [
                [float(table["edges"][0][i]), float(table["edges"][0][i + 1])],
                [float(table["edges"][1][j]), float(table["edges"][1][j + 1])],
            ]
            text = ", ".join(
                f"{lo:.3g} < {name} < {hi:.3g}"
                for name, (lo, hi) in zip(names, bounds, strict=True)
            )
            found.append(
                {
                    "region": text + (f" {unit}" if unit else ""),
                    "bounds": bounds,
                    "n": int(table["n"][i, j]),
                    **{key: float(table[key][i, j]) for key in ("rate", "noise", "z")},
                }
            )
        return sorted(found, key=lambda region: -abs(region["z"]))

    def summary(self, threshold: float = SIGNIFICANCE) -> dict[str, Any]:
        """JSON-able: stars, units, the median absolute relative residual and,
        per plane, the largest absolute z and the significant regions."""
        out: dict[str, Any] = {
            "n_stars": len(self.rate),
            "n_flows": int(self.member_rate.shape[0]),
            "units": dict(self.units),
            "threshold": threshold,
            "median_abs_relative": float(np.median(np.abs(self.relative))),
        }
        for plane in _PLANES:
            z = self.by_region(plane)["z"]
            out[plane] = {
                "max_abs_z": float(np.nanmax(np.abs(z)))
                if np.isfinite(z).any()
                else None,
                "significant": self.significant(plane, threshold=threshold),
            }
        return out

    def plot(self, threshold: float = SIGNIFICANCE):
        """A figure of the significance z of each region in (R, z) and (x, y)."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
        limit = max(2 * threshold, 1.0)
        unit = self.units.get("length")
        for ax, plane in zip(axes, _PLANES, strict=True):
            table = self.by_region(plane)
            mesh = ax.pcolormesh(
                *table["edges"],
                table["z"].T,
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
            )
            # The outer bins reach the farthest stars; show the bulk of them.
            for coordinate, set_lim in zip(
                self.coordinates(plane), (ax.set_xlim, ax.set_ylim), strict=True
            ):
                set_lim(*np.quantile(coordinate, [0.005, 0.995]))
            names = _PLANES[plane]
            ax.set_xlabel(names[0] + (f" [{unit}]" if unit else ""))
            ax.set_ylabel(names[1] + (f" [{unit}]" if unit else ""))
            for region in self.significant(plane, threshold=threshold):
                (a0, a1), (b0, b1) = region["bounds"]
                ax.add_patch(
                    plt.Rectangle((a0, b0), a1 - a0, b1 - b0, fill=False, lw=1.5)
                )
        fig.colorbar(mesh, ax=axes, label=r"$\partial_t \ln n$ / noise")
        fig.suptitle(
            f"Stationarity by region; outlined: |z| > {threshold:g}", fontsize=11
        )
        return fig


def stationarity_map(
    df: Any,
    x: np.ndarray,
    v: np.ndarray,
    grad_phi: np.ndarray,
    *,
    pattern_speed: float | None = None,
    units: dict[str, str | None] | None = None,
) -> StationarityMap:
    r"""The stationarity residual at stars, from a DF model and :math:`\nabla\Phi`.

    Parameters
    ----------
    df : :class:`~gala_deeppotential.FlowEnsemble`
        The DF model (its members give the noise of the flows).
    x, v : :class:`numpy.ndarray`, shape (N, 3)
        The stars, in the DF's units (e.g. the catalogue a fit was made on).
    grad_phi : :class:`numpy.ndarray`, shape (N, 3)
        :math:`\nabla\Phi` at the stars, in the same units.
    pattern_speed : float, optional
        :math:`\Omega_p` of a rotating potential, in the units of v / x.
    units : dict, optional
        ``length`` and ``time`` unit names, recorded in the map.

    Returns
    -------
    map : :class:`StationarityMap`
    """
    x, v, grad_phi = (
        torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (x, v, grad_phi)
    )

    def rate_and_size(model) -> tuple[torch.Tensor, torch.Tensor]:
        # By the Boltzmann equation the residual is d ln f/dt (in the frame
        # of the pattern, for a pattern speed).
        gx, gv = (g.detach().cpu().double() for g in model.grad_log_prob(x, v))
        return stationarity_terms(v, grad_phi, gx, gv, x=x, pattern_speed=pattern_speed)

    rate, size = rate_and_size(df)
    members = [rate_and_size(df.member(k))[0] for k in range(df.n_flows)]
    return StationarityMap(
        x=x.numpy(),
        rate=rate.numpy(),
        member_rate=torch.stack(members).numpy(),
        relative=(rate / size).numpy(),
        units=dict(units or {"length": None, "time": None}),
    )
