"""``DeepPotential``: a trained potential network as a gala potential with units."""

from __future__ import annotations

__all__ = ["AsphericityWarning", "DeepPotential", "ExtrapolationWarning"]

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import astropy.units as u
import numpy as np
import torch
import yaml
from gala.potential import PotentialBase, SCFPotential, SphericalSplinePotential
from gala.potential.common import PotentialParameter
from gala.potential.potential.io import to_dict
from gala.potential.scf import compute_coeffs_discrete
from gala.units import DimensionlessUnitSystem, UnitSystem

from . import io
from .nn import PotentialNet, sphere_directions
from .runtime import torch_threads

#: Model-file kind written by :meth:`DeepPotential.save`.
MODEL_KIND = "deep_potential"

#: Evaluating beyond this multiple of ``data_radius`` warns.
EXTRAPOLATION_FACTOR = 2.0

# Points per batch for the Laplacian and Hessian, whose intermediates are
# (N, n_hidden, 3): this bounds their memory to a few tens of MB.
_CHUNK = 8192


class ExtrapolationWarning(UserWarning):
    """The potential was evaluated far outside the region that held the data."""


class AsphericityWarning(UserWarning):
    """A spherical export was made of a potential that is measurably aspherical."""


def _checksum(net: PotentialNet) -> str:
    """SHA-256 of the network's configuration and exact weights."""
    tensors, config = net.to_state()
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _is_dimensionless(units: UnitSystem) -> bool:
    return isinstance(units, DimensionlessUnitSystem)


def _units_to_json(units: UnitSystem) -> list[str] | None:
    if _is_dimensionless(units):
        return None
    return [str(unit) for unit in units.to_dict().values()]


def _quantity_to_json(q: u.Quantity) -> list:
    return [float(q.value), str(q.unit)]


class DeepPotential(PotentialBase):
    r"""A learned potential :math:`\Phi_\theta` as a gala potential.

    Wraps a trained :class:`~gala_deeppotential.nn.PotentialNet` so that it
    behaves like any gala potential: ``energy``, ``gradient``,
    ``acceleration``, ``density`` (:math:`\nabla^2\Phi / 4\pi G`),
    ``hessian``, ``mass_enclosed`` and ``circular_velocity`` return
    Quantities; it integrates orbits with every gala integrator, composes
    with other potentials, pickles, and saves to gala's YAML plus a model
    file. ``origin`` and ``R`` place the network's frame in space as for
    gala's C potentials: the network sees :math:`R\,(\vec{q} - \vec{q}_0)`.

    The network works in plain floats of its own unit system, given by
    ``net_length`` and ``net_energy``; these default to the units of the
    potential, and ``replace_units`` keeps them right.

    Parameters
    ----------
    net : :class:`~gala_deeppotential.nn.PotentialNet`, optional
        The trained network. A copy is kept; the original may change
        afterwards without effect. Omit it to read ``model_file``.
    net_length : :class:`~astropy.units.Quantity`, numeric [length], optional
        The network's unit of length: ``x_net = x / net_length``.
    net_energy : :class:`~astropy.units.Quantity`, numeric [specific energy], optional
        The network's unit of potential: ``Phi = Phi_net * net_energy``.
    data_radius : :class:`~astropy.units.Quantity`, numeric [length], optional
        Radius, in the network's frame, that holds the training data.
        Evaluating beyond ``EXTRAPOLATION_FACTOR`` times this radius warns
        with :class:`ExtrapolationWarning`. Default: no limit.
    checksum : str, optional
        SHA-256 of the weights; computed when omitted, checked when given.
        Two potentials compare equal only if their networks are identical.
    model_file : str or path-like, optional
        A model file written by :meth:`save` or :meth:`to_model_file`.
    units : :class:`~gala.units.UnitSystem`, optional
        Unit system of the potential; ``None`` for dimensionless (G = 1).
    origin : :class:`~astropy.units.Quantity`, array_like [length], optional
        Centre of the network's frame.
    R : array_like or :class:`~scipy.spatial.transform.Rotation`, optional
        Rotation into the network's frame.
    n_threads : int or None
        Torch intra-op threads used while evaluating; ``None`` keeps the
        process-wide setting. One thread is fastest for orbit batches of a
        few thousand on a small or shared machine (see ``docs/benchmarks.md``);
        more pay off only for large batches on idle cores.
    dtype : {"float64", "float32"}
        Evaluation precision. float64 conserves orbit energies to the
        integrator's accuracy; float32 is 2-3x faster (``docs/benchmarks.md``).

    Examples
    --------
    >>> import astropy.units as u
    >>> from gala.units import galactic
    >>> from gala_deeppotential.nn import PotentialNet
    >>> net = PotentialNet(n_hidden=16, n_layers=2, length_scale=3.0, phi_scale=0.1)
    >>> pot = DeepPotential(net, units=galactic, data_radius=30 * u.kpc)
    >>> pot.energy([1.0, 2.0, 3.0] * u.kpc).unit
    Unit("kpc2 / Myr2")
    >>> pot.gradient([[1.0, 2.0], [0.0, 1.0], [3.0, 0.5]] * u.kpc).shape
    (3, 2)
    """

    net_length = PotentialParameter("net_length", physical_type="length")
    net_energy = PotentialParameter("net_energy", physical_type="specific energy")
    data_radius = PotentialParameter(
        "data_radius", physical_type="length", default=np.inf
    )
    checksum = PotentialParameter(
        "checksum", physical_type=None, default="", convert=str
    )

    # gala's YAML writer stores these attributes and hands them back to
    # __init__ on load.
    _extra_serialize_args: ClassVar[list[str]] = ["model_file"]

    def __init__(
        self,
        net: PotentialNet | None = None,
        *,
        model_file: str | os.PathLike | None = None,
        units: UnitSystem | None = None,
        origin=None,
        R=None,
        n_threads: int | None = 1,
        dtype: str | torch.dtype = "float64",
        **kwargs,
    ) -> None:
        if net is None:
            if model_file is None:
                raise TypeError(
                    "DeepPotential needs a network: pass net=PotentialNet(...), "
                    "or read one with DeepPotential.from_file(path)"
                )
            net = _read_model(model_file)[0]
        net = copy.deepcopy(net).cpu().eval().requires_grad_(False)
        checksum = _checksum(net)
        given = str(kwargs.get("checksum", "") or "")
        if given and given != checksum:
            raise ValueError(
                "the network does not match the checksum it was saved with: "
                f"{checksum[:12]}... != {given[:12]}...; was the model file "
                f"{model_file} replaced after the YAML was written?"
            )
        kwargs["checksum"] = checksum
        units = self._validate_units(units)
        if _is_dimensionless(units):
            kwargs.setdefault("net_length", 1.0)
            kwargs.setdefault("net_energy", 1.0)
        else:
            kwargs.setdefault("net_length", 1.0 * units["length"])
            kwargs.setdefault("net_energy", 1.0 * units["specific energy"])
        super().__init__(units=units, origin=origin, R=R, **kwargs)

        self._net = net
        self.model_file = None if model_file is None else str(model_file)
        if n_threads is not None and int(n_threads) < 1:
            raise ValueError(f"n_threads must be at least 1, got {n_threads}")
        self.n_threads = None if n_threads is None else int(n_threads)
        dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be float64 or float32, got {dtype}")
        self.dtype = dtype
        self._fast: PotentialNet | None = None

    # ------------------------------------------------------------------
    # Construction and persistence

    @classmethod
    def from_fit(
        cls, fit: Any, units: UnitSystem | None = None, **kwargs
    ) -> DeepPotential:
        """Wrap the result of :func:`~gala_deeppotential.fit.fit_potential`.

        Parameters
        ----------
        fit : :class:`~gala_deeppotential.fit.PotentialFit`
            Its ``.net`` and ``.data_radius`` (in the network's length unit)
            are used.
        units : :class:`~gala.units.UnitSystem`, optional
            The unit system the training arrays were in; ``None`` for
            dimensionless.
        **kwargs
            Passed to :class:`DeepPotential`.

        Returns
        -------
        pot : :class:`DeepPotential`
        """
        units = cls._validate_units(units)
        radius = float(fit.data_radius)
        if not _is_dimensionless(units):
            radius = radius * units["length"]
        kwargs.setdefault("data_radius", radius)
        return cls(fit.net, units=units, **kwargs)

    @classmethod
    def from_file(cls, model_path: str | os.PathLike, **kwargs) -> DeepPotential:
        """Read a potential from its model file alone.

        Parameters
        ----------
        model_path : str or path-like
            A model file written by :meth:`save` or :meth:`to_model_file`.
        **kwargs
            Override what the file recorded (``units``, ``origin``, ``R``,
            ``data_radius``, ``n_threads``, ``dtype``...).

        Returns
        -------
        pot : :class:`DeepPotential`
            With the unit system, scales, origin and rotation it was saved with.
        """
        net, meta = _read_model(model_path)
        units = meta["units"]
        spec = {
            "units": None if units is None else UnitSystem(*map(u.Unit, units)),
            "origin": np.array(meta["origin"]),
            "R": None if meta["R"] is None else np.array(meta["R"]),
            "model_file": str(model_path),
            "checksum": meta["checksum"],
        }
        for name in ("net_length", "net_energy", "data_radius"):
            value, unit = meta[name]
            spec[name] = value * u.Unit(unit) if units is not None else value
        return cls(net, **{**spec, **kwargs})

    def to_model_file(self, path: str | os.PathLike) -> Path:
        """Write the network, scales, units, origin and rotation to a model file.

        Parameters
        ----------
        path : str or path-like
            Destination, written with :func:`gala_deeppotential.io.save`.

        Returns
        -------
        path : :class:`pathlib.Path`
        """
        tensors, config = self._net.to_state()
        metadata = {
            "net_config": config,
            "checksum": self.parameters["checksum"],
            "units": _units_to_json(self.units),
            "origin": np.asarray(self.origin, dtype=float).tolist(),
            "R": None if self.R is None else np.asarray(self.R, float).tolist(),
            **{
                name: _quantity_to_json(self.parameters[name])
                for name in ("net_length", "net_energy", "data_radius")
            },
        }
        return io.save(path, kind=MODEL_KIND, tensors=tensors, metadata=metadata)

    def save(
        self, f: str | os.PathLike, model_path: str | os.PathLike | None = None
    ) -> None:
        """Write gala's YAML description plus the model file it refers to.

        Read it back with ``gala.potential.load(f, module=gala_deeppotential)``.
        Unlike gala's own YAML, ``origin`` and ``R`` are kept.

        Parameters
        ----------
        f : str or path-like
            The YAML file.
        model_path : str or path-like, optional
            Where to write the network; by default next to ``f`` with the
            suffix ``.pt``. The YAML records its absolute path.
        """
        f = Path(f)
        model_path = Path(model_path) if model_path else f.with_suffix(".pt")
        if model_path.resolve() == f.resolve():
            raise ValueError("the model file and the YAML file must differ")
        model_path = self.to_model_file(model_path).resolve()
        d = to_dict(self)
        d["extra_args"] = {
            "model_file": str(model_path),
            "origin": np.asarray(self.origin, dtype=float).tolist(),
            "R": None if self.R is None else np.asarray(self.R, float).tolist(),
        }
        with open(f, "w", encoding="utf-8") as stream:
            yaml.dump(d, stream, default_flow_style=None)

    def replicate(self, **kwargs) -> DeepPotential:
        """A copy with some parameters, ``units``, ``origin`` or ``R`` changed.

        Unlike gala's default, the network is kept.
        """
        kwargs.setdefault("net", self._net)
        kwargs.setdefault("model_file", self.model_file)
        kwargs.setdefault("n_threads", self.n_threads)
        kwargs.setdefault("dtype", self.dtype)
        if kwargs["net"] is not self._net:
            kwargs.setdefault("checksum", "")
        return super().replicate(**kwargs)

    def replace_units(self, units: UnitSystem, copy: bool = True) -> DeepPotential:
        """The same potential in another unit system.

        As :meth:`gala.potential.PotentialBase.replace_units`, which keeps the
        numbers of ``origin`` while changing their unit; here ``origin`` is
        converted, so the potential stays where it was.
        """
        origin = self.origin * self.units["length"]
        pot = super().replace_units(units, copy=copy)
        if not _is_dimensionless(pot.units):
            pot.origin = origin.to_value(pot.units["length"])
        return pot

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_net"] = self._net.to_state()
        state["_fast"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        tensors, config = state["_net"]
        state["_net"] = PotentialNet.from_state(tensors, config).eval()
        state["_net"].requires_grad_(False)
        self.__dict__.update(state)

    @property
    def net(self) -> PotentialNet:
        """A copy of the wrapped network."""
        return copy.deepcopy(self._net)

    # ------------------------------------------------------------------
    # Evaluation

    def _scales(self) -> tuple[float, float]:
        # Read from the parameters at every call: replace_units rewrites them.
        return (
            float(self.parameters["net_length"].value),
            float(self.parameters["net_energy"].value),
        )

    def _to_local(self, q: np.ndarray) -> np.ndarray:
        """Positions ``(N, 3)`` to the network's frame, :math:`R(q - q_0)`."""
        x = np.asarray(q, dtype=np.float64) - self.origin
        if self.R is not None:
            x = x @ self.R.T
        radius = float(self.parameters["data_radius"].value)
        if np.isfinite(radius) and x.size:
            # A fixed message, so that the warnings filter shows it once per
            # call site rather than at every step of an orbit.
            if np.max(np.sum(x * x, axis=1)) > (EXTRAPOLATION_FACTOR * radius) ** 2:
                warnings.warn(
                    f"DeepPotential evaluated beyond {EXTRAPOLATION_FACTOR:g} x "
                    f"data_radius = {radius:.4g} {self.units['length']}, where "
                    "the network extrapolates",
                    ExtrapolationWarning,
                    stacklevel=4,
                )
        return x

    def _cache(self) -> PotentialNet:
        """The network in the evaluation dtype, copied once."""
        if self._fast is None or self._fast.phi_scale.dtype != self.dtype:
            self._fast = copy.deepcopy(self._net).to(self.dtype)
        return self._fast

    def _input(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x / self._scales()[0]).to(self.dtype)

    def _local_energy(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch_threads(self.n_threads):
            phi = self._cache()(self._input(x))
        return phi.numpy().astype(np.float64) * self._scales()[1]

    def _local_gradient(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch_threads(self.n_threads):
            grad = self._cache().value_and_grad(self._input(x))[1]
        length, energy = self._scales()
        return grad.numpy().astype(np.float64) * (energy / length)

    def _local_laplacian(self, x: np.ndarray) -> np.ndarray:
        net = self._cache()
        with torch_threads(self.n_threads):
            lap = [
                net.grad_and_laplacian(chunk)[2].detach()
                for chunk in torch.split(self._input(x), _CHUNK)
            ]
        length, energy = self._scales()
        lap = torch.cat(lap).numpy() if lap else np.zeros(0)
        return lap.astype(np.float64) * (energy / length**2)

    def _energy(self, q: np.ndarray, t=0.0) -> np.ndarray:
        return self._local_energy(self._to_local(q))

    def _gradient(self, q: np.ndarray, t=0.0) -> np.ndarray:
        # gala hands the gradient positions shaped (3, N) and wants (3, N) back.
        grad = self._local_gradient(self._to_local(q.T))
        if self.R is not None:
            grad = grad @ self.R
        return np.ascontiguousarray(grad.T)

    def _density(self, q: np.ndarray, t=0.0) -> np.ndarray:
        return self._local_laplacian(self._to_local(q)) / (4 * np.pi * self.G)

    def _hessian(self, q: np.ndarray, t=0.0) -> np.ndarray:
        net = self._cache()
        with torch_threads(self.n_threads):
            hess = [
                net.hessian(chunk)
                for chunk in torch.split(self._input(self._to_local(q)), _CHUNK)
            ]
        length, energy = self._scales()
        hess = torch.cat(hess).numpy() if hess else np.zeros((0, 3, 3))
        hess = hess.astype(np.float64) * (energy / length**2)
        if self.R is not None:
            hess = np.einsum("ki,nkl,lj->nij", self.R, hess, self.R)
        return hess

    def hessian(self, q=None, t=0.0, **coord_kwargs):
        """The Hessian :math:`\\partial_i\\partial_j\\Phi`, shape ``(3, 3, ...)``.

        As :meth:`gala.potential.PotentialBase.hessian`, but rotated
        potentials are supported, since the rotation is applied here.
        """
        q = self._process_position_argument(q, coord_kwargs)
        orig_shape, q = self._get_c_valid_arr(q)
        return self._reapply_units_and_shape(
            self._hessian(q),
            u.get_physical_type("frequency drift"),
            (orig_shape[0], orig_shape[0], *orig_shape[1:]),
        )

    # ------------------------------------------------------------------
    # C-speed exports

    def _export_radius(self, r_max) -> float:
        if r_max is not None:
            return float(self._remove_units(r_max))
        radius = float(self.parameters["data_radius"].value)
        if not np.isfinite(radius):
            raise ValueError(
                "this potential has no data_radius; pass r_max, the radius out "
                "to which the export should follow the network"
            )
        return radius

    def _with_units(self, value, physical_type: str):
        if _is_dimensionless(self.units):
            return value
        return value * self.units[physical_type]

    def asphericity(
        self, r_max=None, n_radii: int = 64, n_directions: int = 256
    ) -> float:
        r"""How far the forces are from spherical, as a fraction.

        .. math::

            \epsilon = \left[\frac{\sum_{r}\langle|\nabla\Phi
            - \bar{g}(r)\hat{r}|^2\rangle}{\sum_{r}\bar{g}(r)^2}\right]^{1/2},
            \qquad \bar{g}(r) = \langle\nabla\Phi\cdot\hat{r}\rangle,

        with averages over directions, on radii log-spaced out to ``r_max``
        about ``origin``. It is the relative RMS force error of the spherical
        export, :meth:`to_spherical_spline`.

        Parameters
        ----------
        r_max : :class:`~astropy.units.Quantity`, numeric [length], optional
            Outer radius; default ``data_radius``.
        n_radii, n_directions : int
            Resolution of the average.

        Returns
        -------
        epsilon : float
        """
        r_max = self._export_radius(r_max)
        radii = np.geomspace(r_max / 100, r_max, n_radii)
        dirs = sphere_directions(n_directions)
        grad = self._local_gradient((radii[:, None, None] * dirs).reshape(-1, 3))
        grad = grad.reshape(n_radii, n_directions, 3)
        g_r = np.einsum("kdi,di->k", grad, dirs) / n_directions
        residual = grad - g_r[:, None, None] * dirs
        return float(np.sqrt(np.mean(residual**2) * 3 / np.mean(g_r**2)))

    def to_spherical_spline(
        self,
        r_max=None,
        n_knots: int = 32,
        r_min=None,
        n_directions: int = 256,
        interpolation_method: str = "cspline",
        asphericity_tolerance: float = 0.01,
        keep_gauge: bool = True,
    ) -> SphericalSplinePotential:
        r"""Export the angle-averaged potential as a C-speed spline.

        Tabulates :math:`\bar\Phi(r)`, the average of :math:`\Phi_\theta`
        over ``n_directions`` directions, at ``r = 0`` and ``n_knots - 1``
        radii log-spaced from ``r_min`` to ``r_max``, for gala's
        :class:`~gala.potential.SphericalSplinePotential`. Beyond ``r_max``
        that potential continues as the Keplerian
        :math:`\bar\Phi(r_{\max}) r_{\max}/r`, which is right when the
        gauge has :math:`\Phi \to 0` at infinity, as the ``"kepler"`` gauge of
        :func:`~gala_deeppotential.fit.fit_potential` does.

        Parameters
        ----------
        r_max : :class:`~astropy.units.Quantity`, numeric [length], optional
            Outer knot; default ``data_radius``.
        n_knots : int
            Number of knots, including ``r = 0``. On a trained Plummer network
            32 knots measured as accurate as 64 and 128 (median force error
            0.15% against the network) and evaluate fastest: orbits cost 2.1×
            gala's C Plummer, against 3.2× and 3.9× (``docs/benchmarks.md``).
        r_min : :class:`~astropy.units.Quantity`, numeric [length], optional
            Innermost non-zero knot; default ``r_max / 1000``.
        n_directions : int
            Directions in the angular average (a Fibonacci lattice).
        interpolation_method : str
            GSL interpolation, as for
            :class:`~gala.potential.SphericalSplinePotential`.
        asphericity_tolerance : float
            Warn with :class:`AsphericityWarning` when :meth:`asphericity`
            exceeds this: the export then misses forces by about that
            fraction.
        keep_gauge : bool
            Keep the network's additive constant, so that energies inside
            ``r_max`` equal the network's. Otherwise shift the table so that
            the Keplerian tail meets the network's radial force at ``r_max``
            (forces continuous there, energies offset by a constant); use this
            for a network in another gauge, e.g. :math:`\Phi(0) = 0`.

        Raises
        ------
        ValueError
            If ``keep_gauge`` and :math:`\bar\Phi(r_{\max}) \geq 0`, where
            the tail would repel.

        Returns
        -------
        pot : :class:`~gala.potential.SphericalSplinePotential`
            Centred on ``origin``, in the same unit system.
        """
        r_max = self._export_radius(r_max)
        r_min = r_max / 1000 if r_min is None else float(self._remove_units(r_min))
        if not 0 < r_min < r_max:
            raise ValueError(f"need 0 < r_min < r_max, got {r_min}, {r_max}")
        epsilon = self.asphericity(r_max)
        if epsilon > asphericity_tolerance:
            warnings.warn(
                f"the potential is aspherical: the spherical export misses the "
                f"forces by {100 * epsilon:.2g}% (RMS) within r = {r_max:.4g}; "
                "use to_scf(nmax, lmax) with lmax > 0",
                AsphericityWarning,
                stacklevel=2,
            )
        r_knots = np.concatenate([[0.0], np.geomspace(r_min, r_max, n_knots - 1)])
        dirs = sphere_directions(n_directions)
        phi = self._local_energy((r_knots[:, None, None] * dirs).reshape(-1, 3))
        phi = phi.reshape(n_knots, n_directions).mean(axis=1)
        if keep_gauge:
            if phi[-1] >= 0:
                raise ValueError(
                    f"the angle-averaged potential at r_max is {phi[-1]:.4g} >= 0, "
                    "so the Keplerian tail beyond r_max would repel; use the "
                    "'kepler' gauge of fit_potential, or keep_gauge=False"
                )
            shift = 0.0
        else:
            g_out = self._local_gradient(r_max * dirs)
            shift = -r_max * np.mean(np.sum(g_out * dirs, axis=1)) - phi[-1]
        return SphericalSplinePotential(
            r_knots=self._with_units(r_knots, "length"),
            spline_values=self._with_units(phi + shift, "specific energy"),
            spline_value_type="potential",
            interpolation_method=interpolation_method,
            units=self.units,
            origin=self.origin.copy(),
        )

    def to_scf(
        self,
        nmax: int,
        lmax: int,
        r_s=None,
        r_max=None,
        n_radial: int = 128,
        n_theta: int | None = None,
        n_phi: int | None = None,
        skip_odd: bool = False,
        skip_even: bool = False,
        skip_m: bool = False,
    ) -> SCFPotential:
        r"""Export a basis-function expansion of the density, at C speed.

        The density :math:`\rho = \nabla^2\Phi_\theta / 4\pi G`, cut off at
        ``r_max``, is tabulated once, vectorised, on a product quadrature
        grid (Gauss–Legendre in :math:`\xi = (r - r_s)/(r + r_s)` and
        :math:`\cos\theta`, uniform in :math:`\phi`). The quadrature
        weights times the density are handed to gala's
        :func:`~gala.potential.scf.compute_coeffs_discrete` as point masses,
        which turns its sum into the Hernquist & Ostriker (1992) coefficient
        integrals. Energies follow the expansion's own gauge,
        :math:`\Phi \to 0` at infinity.

        Parameters
        ----------
        nmax, lmax : int
            Radial and angular orders of the expansion.
        r_s : :class:`~astropy.units.Quantity`, numeric [length], optional
            Scale radius of the basis; default :math:`r_{1/2}/(1 + \sqrt2)`,
            the Hernquist scale with the network's half-mass radius.
        r_max : :class:`~astropy.units.Quantity`, numeric [length], optional
            Where the density is cut off; default ``data_radius``.
        n_radial : int
            Radial quadrature nodes.
        n_theta, n_phi : int, optional
            Angular quadrature nodes; default ``max(2 lmax + 8, 24)`` each,
            enough to average the network's small-scale angular structure
            (8 nodes missed 7% of the mass of a trained Plummer network).
        skip_odd, skip_even, skip_m : bool
            Passed to :func:`~gala.potential.scf.compute_coeffs_discrete`.

        Returns
        -------
        pot : :class:`~gala.potential.scf.SCFPotential`
            With the same units, ``origin`` and ``R``.
        """
        r_max = self._export_radius(r_max)
        if r_s is None:
            r_s = self._half_mass_radius(r_max) / (1 + np.sqrt(2))
        else:
            r_s = float(self._remove_units(r_s))
        n_theta = max(2 * lmax + 8, 24) if n_theta is None else n_theta
        n_phi = max(2 * lmax + 8, 24) if n_phi is None else n_phi

        xi_max = (r_max - r_s) / (r_max + r_s)
        nodes, weights = np.polynomial.legendre.leggauss(n_radial)
        xi = -1 + (nodes + 1) * (xi_max + 1) / 2
        r = r_s * (1 + xi) / (1 - xi)
        # dV = r^2 dr dcos(theta) dphi, with dr/dxi = 2 r_s / (1 - xi)^2
        w_r = weights * (xi_max + 1) / 2 * r**2 * 2 * r_s / (1 - xi) ** 2
        cos_t, w_t = np.polynomial.legendre.leggauss(n_theta)
        phi = 2 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
        sin_t = np.sqrt(1 - cos_t**2)
        unit = np.stack(
            [
                sin_t[:, None] * np.cos(phi),
                sin_t[:, None] * np.sin(phi),
                np.broadcast_to(cos_t[:, None], (n_theta, n_phi)),
            ],
            axis=-1,
        ).reshape(-1, 3)
        xyz = (r[:, None, None] * unit).reshape(-1, 3)
        w = (w_r[:, None] * np.repeat(w_t, n_phi) * (2 * np.pi / n_phi)).ravel()
        mass = self._local_laplacian(xyz) / (4 * np.pi * self.G) * w
        total = float(mass.sum())
        if not total > 0:
            raise ValueError(
                f"the network's density integrates to {total:.3g} within r_max; "
                "cannot build an SCF expansion"
            )
        snlm, tnlm = compute_coeffs_discrete(
            xyz,
            mass / total,
            nmax=nmax,
            lmax=lmax,
            r_s=r_s,
            skip_odd=skip_odd,
            skip_even=skip_even,
            skip_m=skip_m,
        )
        return SCFPotential(
            m=self._with_units(total, "mass"),
            r_s=self._with_units(r_s, "length"),
            Snlm=snlm,
            Tnlm=tnlm,
            units=self.units,
            origin=self.origin.copy(),
            R=None if self.R is None else self.R.copy(),
        )

    def _half_mass_radius(self, r_max: float, n: int = 256) -> float:
        """Radius holding half the network's mass within ``r_max``."""
        edges = np.concatenate([[0.0], np.geomspace(r_max / 1e4, r_max, n)])
        mid = 0.5 * (edges[1:] + edges[:-1])
        dirs = sphere_directions(64)
        lap = self._local_laplacian((mid[:, None, None] * dirs).reshape(-1, 3))
        shell = lap.reshape(n, -1).mean(axis=1) * (edges[1:] ** 3 - edges[:-1] ** 3)
        mass = np.cumsum(np.clip(shell, 0, None))
        return float(np.interp(0.5 * mass[-1], mass, edges[1:]))


def _read_model(path: str | os.PathLike) -> tuple[PotentialNet, dict]:
    tensors, meta = io.load(path, kind=MODEL_KIND)
    return PotentialNet.from_state(tensors, meta["net_config"]), meta
