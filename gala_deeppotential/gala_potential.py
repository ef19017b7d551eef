"""``DeepPotential``: a trained potential network as a gala potential with units."""

from __future__ import annotations

__all__ = ["DeepPotential", "ExtrapolationWarning"]

import copy
import os
import warnings
import weakref
from pathlib import Path
from typing import Any, ClassVar

import astropy.units as u
import gala.potential
import gala.potential.potential
import numpy as np
import torch
import yaml
from gala.potential import PotentialBase
from gala.potential.common import PotentialParameter
from gala.potential.potential.io import to_dict
from gala.units import DimensionlessUnitSystem, UnitSystem

from . import io
from .nn import PotentialNet
from .runtime import torch_threads

#: Model-file kind written by :meth:`DeepPotential.save`.
MODEL_KIND = "deep_potential"

#: Evaluating beyond this multiple of ``data_radius`` warns.
EXTRAPOLATION_FACTOR = 2.0

# Points per batch for the Laplacian and Hessian, whose intermediates are
# (N, n_hidden, 3): this bounds their memory to a few tens of MB.
_CHUNK = 8192

# The networks of the live potentials, by checksum. gala rebuilds a potential
# from its parameters alone, ``cls(units=pot.units, **pot.parameters)``, and
# the checksum parameter names a network exactly, so it finds it here.
_NETWORKS: weakref.WeakValueDictionary[str, PotentialNet] = (
    weakref.WeakValueDictionary()
)


class ExtrapolationWarning(UserWarning):
    """The potential was evaluated far outside the region that held the data."""


def _checksum(net: PotentialNet) -> str:
    return io.state_checksum(*net.to_state())


def _is_dimensionless(units: UnitSystem) -> bool:
    return isinstance(units, DimensionlessUnitSystem)


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
    Importing :mod:`gala_deeppotential` makes the class known to
    ``gala.potential.load``, so a saved potential reads back like any
    other. The exports to C-speed gala potentials are in
    :mod:`gala_deeppotential.export`.

    The network works in plain floats of its own unit system, given by
    ``net_length`` and ``net_energy``; these default to the units of the
    potential, and ``replace_units`` keeps them right.

    Parameters
    ----------
    net : :class:`~gala_deeppotential.nn.PotentialNet`, optional
        The trained network. A copy is kept; the original may change
        afterwards without effect. Omit it to read ``model_file``, or to
        rebuild a potential from the parameters of a live one, as gala does
        (``type(pot)(units=pot.units, **pot.parameters)``): the ``checksum``
        then names the network.
    net_length : :class:`~astropy.units.Quantity`, numeric [length], optional
        The network's unit of length: ``x_net = x / net_length``.
    net_energy : :class:`~astropy.units.Quantity`, numeric [specific energy], optional
        The network's unit of potential: ``Phi = Phi_net * net_energy``.
    data_radius : :class:`~astropy.units.Quantity`, numeric [length], optional
        Radius, in the network's frame, that holds the training data, about
        the network's centre (the origin, or the centre of the local volume a
        network was fitted to). Evaluating beyond ``EXTRAPOLATION_FACTOR``
        times this radius of that centre warns
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
        net = _network(net, model_file, str(kwargs.get("checksum", "") or ""))
        kwargs["checksum"] = _checksum(net)
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
        """Wrap the result of :func:`~gala_deeppotential.fit_potential`.

        Parameters
        ----------
        fit : :class:`~gala_deeppotential.PotentialFit`
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
        net, meta = _read_network(model_path)
        units = meta["units"]
        spec = {
            "units": io.units_from_json(units),
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
            "units": io.units_to_json(self.units),
            "origin": np.asarray(self.origin, dtype=float).tolist(),
            "R": None if self.R is None else np.asarray(self.R, float).tolist(),
            **{
                name: io.quantity_to_json(self.parameters[name])
                for name in ("net_length", "net_energy", "data_radius")
            },
        }
        return io.save(path, kind=MODEL_KIND, tensors=tensors, metadata=metadata)

    def save(
        self, f: str | os.PathLike, model_path: str | os.PathLike | None = None
    ) -> None:
        """Write gala's YAML description plus the model file it refers to.

        Read it back with ``gala.potential.load(f)`` (after
        ``import gala_deeppotential``). Unlike gala's own YAML, ``origin`` and
        ``R`` are kept.

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
        net = PotentialNet.from_state(tensors, config).eval().requires_grad_(False)
        state["_net"] = _NETWORKS.setdefault(_checksum(net), net)
        self.__dict__.update(state)

    @property
    def net(self) -> PotentialNet:
        """A copy of the wrapped network."""
        return copy.deepcopy(self._net)

    @property
    def pattern_speed(self) -> u.Quantity | float | None:
        r"""The pattern speed :math:`\Omega_p` of a rotating potential, or None.

        A potential fitted with a pattern speed (a bar; see
        :func:`~gala_deeppotential.fit`) rotates rigidly about the network's
        z axis. Like gala's bar potentials, this potential is the one of the
        frame that rotates with it, where it is static: integrate orbits in
        :meth:`rotating_frame`. In gala's default static frame it stands
        still. A Quantity [frequency] (a plain number when dimensionless);
        positive is counterclockwise seen from +z.
        """
        omega = self._net.pattern_speed
        if omega is None:
            return None
        length, energy = self._scales()
        omega = omega * np.sqrt(energy) / length
        if _is_dimensionless(self.units):
            return omega
        return (omega / self.units["time"]).to(u.km / u.s / u.kpc)

    def rotating_frame(self) -> gala.potential.ConstantRotatingFrame:
        """gala's frame that rotates with the potential, at :attr:`pattern_speed`.

        Orbits integrated in it, ``gp.Hamiltonian(pot, frame=pot.rotating_frame())``,
        are those in the rotating potential; the Jacobi energy
        (``orbit.energy()`` there) is conserved. With ``R``, the axis is the
        network's z axis.

        Raises
        ------
        ValueError
            For a static potential (no pattern speed), or one whose
            ``origin`` is not 0 (gala's rotating frames turn about the
            origin).
        """
        omega = self.pattern_speed
        if omega is None:
            raise ValueError(
                "this potential has no pattern speed: it is static; fit one "
                "with fit(..., pattern_speed=...) to get a rotating potential"
            )
        if np.any(np.asarray(self.origin) != 0):
            raise ValueError(
                "gala's rotating frames turn about the origin, and this "
                "potential's origin is offset; use origin=0"
            )
        axis = np.array([0.0, 0.0, 1.0])
        if self.R is not None:
            axis = np.asarray(self.R).T @ axis
        return gala.potential.ConstantRotatingFrame(
            Omega=axis * omega, units=self.units
        )

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
            # data_radius is measured from the data's centre: the origin, or
            # the centre of a local volume that the network was fitted to.
            dx = x - self._net.center.numpy() * self._scales()[0]
            # A fixed message, so that the warnings filter shows it once per
            # call site rather than at every step of an orbit.
            if np.max(np.sum(dx * dx, axis=1)) > (EXTRAPOLATION_FACTOR * radius) ** 2:
                warnings.warn(
                    f"DeepPotential evaluated beyond {EXTRAPOLATION_FACTOR:g} x "
                    f"data_radius = {radius:.4g} {self.units['length']} from the "
                    "centre of the data, where the network extrapolates",
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

    def network_energy(self, x: np.ndarray) -> np.ndarray:
        """Φ at positions ``(N, 3)`` in the network's frame, in the potential's units.

        The frame is centred on ``origin`` and rotated by ``R``; the values
        are plain numbers [specific energy]. Like :meth:`network_gradient`
        and :meth:`network_laplacian`, it is what the exports of
        :mod:`gala_deeppotential.export` tabulate.
        """
        with torch.no_grad(), torch_threads(self.n_threads):
            phi = self._cache()(self._input(x))
        return phi.numpy().astype(np.float64) * self._scales()[1]

    def network_gradient(self, x: np.ndarray) -> np.ndarray:
        """∇Φ ``(N, 3)`` at positions ``(N, 3)`` in the network's frame."""
        with torch.no_grad(), torch_threads(self.n_threads):
            grad = self._cache().value_and_grad(self._input(x))[1]
        length, energy = self._scales()
        return grad.numpy().astype(np.float64) * (energy / length)

    def network_laplacian(self, x: np.ndarray) -> np.ndarray:
        """∇²Φ ``(N,)`` at positions ``(N, 3)`` in the network's frame [1/time²]."""
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
        return self.network_energy(self._to_local(q))

    def _gradient(self, q: np.ndarray, t=0.0) -> np.ndarray:
        # gala hands the gradient positions shaped (3, N) and wants (3, N) back.
        grad = self.network_gradient(self._to_local(q.T))
        if self.R is not None:
            grad = grad @ self.R
        return np.ascontiguousarray(grad.T)

    def _density(self, q: np.ndarray, t=0.0) -> np.ndarray:
        return self.network_laplacian(self._to_local(q)) / (4 * np.pi * self.G)

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
    # C-speed exports (gala_deeppotential.export)

    def asphericity(
        self, r_max=None, n_radii: int = 64, n_directions: int = 256
    ) -> float:
        """How far the forces are from spherical; see :func:`.export.asphericity`."""
        from .export import asphericity

        return asphericity(self, r_max, n_radii=n_radii, n_directions=n_directions)

    def to_spherical_spline(self, r_max=None, **options):
        """A C-speed spherical spline; see :func:`.export.to_spherical_spline`."""
        from .export import to_spherical_spline

        return to_spherical_spline(self, r_max, **options)

    def to_cylspline(self, r_max=None, z_max=None, **options):
        """A C-speed axisymmetric R-z spline; see :func:`.export.to_cylspline`."""
        from .export import to_cylspline

        return to_cylspline(self, r_max, z_max, **options)

    def to_scf(self, nmax: int, lmax: int, **options):
        """A C-speed basis-function expansion; see :func:`.export.to_scf`."""
        from .export import to_scf

        return to_scf(self, nmax, lmax, **options)


def _network(
    net: PotentialNet | None, model_file: str | os.PathLike | None, checksum: str
) -> PotentialNet:
    """The network a potential wraps: given, read, or that of a live potential."""
    if net is None and model_file is None:
        if checksum in _NETWORKS:
            return _NETWORKS[checksum]
        raise TypeError(
            "DeepPotential needs a network: pass net=PotentialNet(...) or "
            "model_file=, or read one with DeepPotential.from_file(path) (a "
            "checksum alone names only a network that a live DeepPotential holds)"
        )
    source = net if net is not None else _read_network(model_file)[0]
    net = copy.deepcopy(source).cpu().eval().requires_grad_(False)
    actual = _checksum(net)
    if checksum and checksum != actual:
        raise ValueError(
            "the network does not match the checksum it was saved with: "
            f"{actual[:12]}... != {checksum[:12]}...; was the model file "
            f"{model_file} replaced after the YAML was written?"
        )
    return _NETWORKS.setdefault(actual, net)


def _read_network(path: str | os.PathLike) -> tuple[PotentialNet, dict]:
    tensors, meta = io.load(path, kind=MODEL_KIND)
    return PotentialNet.from_state(tensors, meta["net_config"]), meta


def _register_with_gala() -> None:
    """Make ``gala.potential.load`` find :class:`DeepPotential` by its name.

    gala looks up the class a YAML file names in ``gala.potential`` (for
    composite potentials) and in ``gala.potential.potential`` (for single
    ones); a plugin's class is found there once it is registered.
    """
    for namespace in (gala.potential, gala.potential.potential):
        if DeepPotential.__name__ not in vars(namespace):
            setattr(namespace, DeepPotential.__name__, DeepPotential)


_register_with_gala()
