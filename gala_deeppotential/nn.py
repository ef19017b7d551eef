r"""The potential network :math:`\Phi_\theta(x)`: a smooth MLP with fast derivatives."""

from __future__ import annotations

__all__ = ["ACTIVATIONS", "RADIAL_SOFTENING", "PotentialNet", "check_pattern_speed"]

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Activation = Callable[[torch.Tensor, int], tuple[torch.Tensor, ...]]

#: Default softening :math:`\epsilon` of the radial input feature, in units
#: of the network's length scale: the kink of a cusp is resolved down to about
#: :math:`10^{-3} s_x`.
RADIAL_SOFTENING = 1e-3

# What a saved network's kind of pattern speed rebuilds; a fixed one's value
# is then loaded from its tensors.
_KINDS = {"fit": "fit", "fixed": 0.0}


def check_pattern_speed(pattern_speed: Any) -> float | str | None:
    """A pattern speed as a plain float, ``"fit"`` or None, or a clear error."""
    if pattern_speed is None or (
        isinstance(pattern_speed, str) and pattern_speed == "fit"
    ):
        return pattern_speed
    message = (
        "pattern_speed must be a plain number in the units of v / x, 'fit' or "
        f"None, got {pattern_speed!r} (fit() takes a Quantity)"
    )
    if isinstance(pattern_speed, str) or hasattr(pattern_speed, "unit"):
        raise ValueError(message)
    try:
        value = float(pattern_speed)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not math.isfinite(value):
        raise ValueError(f"pattern_speed must be finite, got {value}")
    return value


def _silu(z: torch.Tensor, order: int):
    s = torch.sigmoid(z)
    h = z * s
    d1 = torch.addcmul(s, h, 1 - s)  # s (1 + z (1 - s))
    if order == 1:
        return h, d1
    return h, d1, s * (1 - s) * (2 + z * (1 - 2 * s))


def _tanh(z: torch.Tensor, order: int):
    t = torch.tanh(z)
    d1 = 1 - t * t
    if order == 1:
        return t, d1
    return t, d1, -2 * t * d1


def _softplus(z: torch.Tensor, order: int):
    s = torch.sigmoid(z)
    if order == 1:
        return nn.functional.softplus(z), s
    return nn.functional.softplus(z), s, s * (1 - s)


#: Smooth activations: ``act(z, order)`` returns the value and its first
#: ``order`` (1 or 2) derivatives, in closed form.
ACTIVATIONS: dict[str, Activation] = {
    "silu": _silu,
    "tanh": _tanh,
    "softplus": _softplus,
}


class PotentialNet(nn.Module):
    r"""A multilayer perceptron for the gravitational potential.

    .. math::

        \Phi_\theta(\vec{x}) = s_\Phi \,
            \mathrm{MLP}_\theta\big((\vec{x} - \vec{x}_c) / s_x\big) + \Phi_0

    The centre :math:`\vec{x}_c`, length scale :math:`s_x` and potential
    scale :math:`s_\Phi` are fixed buffers chosen from the data, so the MLP
    works with numbers of order one;
    :math:`\Phi_0` is the gauge constant, set by
    :func:`~gala_deeppotential.fit.fit_potential`.

    Gradients and Laplacians are propagated through the layers in closed
    form (forward mode), which is several times cheaper than nested autograd
    and stays differentiable for training.

    Parameters
    ----------
    n_hidden : int
        Width of each hidden layer.
    n_layers : int
        Number of hidden layers.
    activation : {"silu", "tanh", "softplus"}
        A smooth activation; SiLU measured best (``docs/record.md``).
    length_scale : float
        :math:`s_x`, in the caller's length unit.
    center : sequence of float, optional
        :math:`\vec{x}_c`, in the caller's length unit; the origin by default.
        A survey's local volume, far from the origin, is centred on itself.
    phi_scale : float
        :math:`s_\Phi`, in the caller's unit of specific energy.
    radial : bool
        Also feed the network the softened radius
        :math:`\varrho = (|\vec{x}|^2/s_x^2 + \epsilon^2)^{1/2}`. A function of
        :math:`\varrho` has a kink at the origin that an MLP of
        :math:`\vec{x}` alone can only round off, so this lets
        :math:`\Phi_\theta` follow a density cusp such as Hernquist's
        :math:`\rho \propto r^{-1}`. It measured better on the cored
        Plummer sphere too, so :func:`~gala_deeppotential.fit.fit_potential`
        turns it on by default; here it is off, the paper's network.
    radial_softening : float
        :math:`\epsilon`, in units of :math:`s_x`: inside about
        :math:`\epsilon s_x` the network has no kink, so the density there is
        finite.
    pattern_speed : float or "fit", optional
        The pattern speed :math:`\Omega_p` about the z axis of a potential
        that rotates rigidly (a bar), in the caller's units of velocity over
        length; ``"fit"`` makes it a trainable parameter, starting at 0.
        ``None`` (default): a static potential. The network gives
        :math:`\Phi` at this instant, in the inertial frame; see
        :attr:`pattern_speed`.

    Examples
    --------
    >>> net = PotentialNet(n_hidden=16, n_layers=2)
    >>> phi, grad = net.value_and_grad(torch.zeros(5, 3))
    >>> phi.shape, grad.shape
    (torch.Size([5]), torch.Size([5, 3]))
    """

    def __init__(
        self,
        n_hidden: int = 128,
        n_layers: int = 3,
        activation: str = "silu",
        length_scale: float = 1.0,
        phi_scale: float = 1.0,
        radial: bool = False,
        radial_softening: float = RADIAL_SOFTENING,
        center: tuple[float, float, float] | None = None,
        pattern_speed: float | str | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if n_layers < 1 or n_hidden < 1:
            raise ValueError("n_layers and n_hidden must be at least 1")
        if not radial_softening > 0:
            raise ValueError(f"radial_softening must be > 0, got {radial_softening}")
        self.config = {
            "n_hidden": int(n_hidden),
            "n_layers": int(n_layers),
            "activation": activation,
            "radial": bool(radial),
            "radial_softening": float(radial_softening),
        }
        self._act = ACTIVATIONS[activation]
        widths = [4 if radial else 3] + [n_hidden] * n_layers
        self.hidden = nn.ModuleList(
            nn.Linear(a, b) for a, b in itertools.pairwise(widths)
        )
        self.out = nn.Linear(n_hidden, 1)
        self.register_buffer("length_scale", torch.tensor(float(length_scale)))
        self.register_buffer("phi_scale", torch.tensor(float(phi_scale)))
        self.register_buffer("phi_offset", torch.tensor(0.0))
        self.register_buffer(
            "center", torch.zeros(3) if center is None else torch.tensor(center)
        )
        self._init_pattern_speed(pattern_speed)

    def _init_pattern_speed(self, pattern_speed: float | str | None) -> None:
        r"""The pattern speed as a tensor ``omega`` in the network's natural
        units, :math:`\Omega_p s_x / s_\Phi^{1/2}`: a parameter when fitted,
        so the optimiser sees a number of order one, else a buffer."""
        pattern_speed = check_pattern_speed(pattern_speed)
        fitted = pattern_speed == "fit"
        self.config["pattern_speed"] = (
            None if pattern_speed is None else "fit" if fitted else "fixed"
        )
        if pattern_speed is None:
            return
        # Ω_p s_x / s_Φ^(1/2): the pattern speed in the network's unit of time.
        time = float(self.length_scale / self.phi_scale.sqrt())
        omega = torch.tensor(0.0 if fitted else pattern_speed * time)
        if fitted:
            self.omega = nn.Parameter(omega)
        else:
            self.register_buffer("omega", omega)

    @property
    def pattern_speed(self) -> float | None:
        r""":math:`\Omega_p` in the caller's units (velocity over length), or None.

        A potential with a pattern speed rotates rigidly about the z axis
        (counterclockwise seen from +z for :math:`\Omega_p > 0`): it is
        static in the frame rotating at :math:`\Omega_p`, where the network
        gives it.
        """
        omega = self.pattern_speed_tensor()
        return None if omega is None else float(omega.detach())

    def scale_forces(self, factor: float) -> None:
        r"""Multiply :math:`\Phi - \Phi_0` and the forces by ``factor``, in place.

        The pattern speed, held in units that follow :math:`s_\Phi`, keeps
        its value in the caller's units.
        """
        with torch.no_grad():
            self.phi_scale.mul_(factor)
            if self.config.get("pattern_speed") is not None:
                self.omega.div_(math.sqrt(factor))

    def pattern_speed_tensor(self) -> torch.Tensor | None:
        r""":math:`\Omega_p` in the caller's units as a tensor that keeps the
        gradient of a fitted one, or None for a static potential."""
        if self.config.get("pattern_speed") is None:
            return None
        return self.omega * self.phi_scale.sqrt() / self.length_scale

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input features ``(N, 3 or 4)`` at positions ``(N, 3)``."""
        y = (x - self.center) / self.length_scale
        if not self.config["radial"]:
            return y
        eps = self.config["radial_softening"]
        rho = torch.sqrt((y * y).sum(1, keepdim=True) + eps**2)
        return torch.cat([y, rho], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Phi(\vec{x})`, shape ``(N,)``, for positions ``(N, 3)``."""
        h = self._inputs(x)
        for layer in self.hidden:
            h = self._act(layer(h), 1)[0]
        return self.out(h)[:, 0] * self.phi_scale + self.phi_offset

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\Phi` and :math:`\nabla\Phi` by one forward and one backward sweep.

        No autograd graph is built, so this is the fast path for orbit
        integration. It is not differentiable with respect to the weights.

        Returns
        -------
        phi : :class:`torch.Tensor`, shape ``(N,)``
        grad : :class:`torch.Tensor`, shape ``(N, 3)``
        """
        with torch.no_grad():
            h = h_in = self._inputs(x)
            slopes = []
            for layer in self.hidden:
                h, d1 = self._act(torch.addmm(layer.bias, h, layer.weight.T), 1)
                slopes.append(d1)
            w_out = self.out.weight[0]
            phi = (h @ w_out + self.out.bias[0]) * self.phi_scale + self.phi_offset
            # Back-propagate by hand, in place, reusing the activation slopes.
            delta = slopes[-1].mul_(w_out)
            for layer, d1 in zip(self.hidden[:0:-1], slopes[-2::-1], strict=True):
                delta = torch.mm(delta, layer.weight).mul_(d1)
            grad = torch.mm(delta, self.hidden[0].weight)
            if self.config["radial"]:
                # d(rho)/dy = y / rho
                grad = grad[:, :3].addcmul_(grad[:, 3:], h_in[:, :3] / h_in[:, 3:])
            return phi, grad.mul_(self.phi_scale / self.length_scale)

    def grad_and_laplacian(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r""":math:`\Phi`, :math:`\nabla\Phi` and :math:`\nabla^2\Phi`, differentiably.

        Each layer carries its Jacobian :math:`J = \partial h/\partial x` and
        Laplacian :math:`L = \nabla^2 h`. For :math:`h' = \sigma(W h + b)`,
        :math:`J' = \sigma'(z)\, W J` and
        :math:`L' = \sigma''(z) \sum_j (W J)_{\cdot j}^2 + \sigma'(z)\, W L`.

        Returns
        -------
        phi : :class:`torch.Tensor`, shape ``(N,)``
        grad : :class:`torch.Tensor`, shape ``(N, 3)``
        lap : :class:`torch.Tensor`, shape ``(N,)``
        """
        n = x.shape[0]
        h = self._inputs(x)
        jac = torch.eye(3, dtype=x.dtype, device=x.device).expand(n, 3, 3)
        lap = torch.zeros(n, 3, dtype=x.dtype, device=x.device)
        if self.config["radial"]:
            # rho = (|y|^2 + eps^2)^(1/2): grad y / rho, Laplacian (3 - |y/rho|^2) / rho
            y, rho = h[:, :3], h[:, 3:]
            unit = y / rho
            jac = torch.cat([jac, unit[:, None, :]], dim=1)
            lap_rho = (3 - (unit * unit).sum(1, keepdim=True)) / rho
            lap = torch.cat([lap, lap_rho], dim=1)
        for layer in self.hidden:
            z = layer(h)
            jz = torch.einsum("oi,nij->noj", layer.weight, jac)
            lz = lap @ layer.weight.T
            h, d1, d2 = self._act(z, 2)
            jac = d1[..., None] * jz
            lap = d2 * (jz**2).sum(-1) + d1 * lz
        w = self.out.weight[0]
        phi = self.out(h)[:, 0] * self.phi_scale + self.phi_offset
        grad = torch.einsum("o,noj->nj", w, jac) * (self.phi_scale / self.length_scale)
        lap_phi = (lap @ w) * (self.phi_scale / self.length_scale**2)
        return phi, grad, lap_phi

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla^2\Phi = 4\pi G\rho`, shape ``(N,)``."""
        return self.grad_and_laplacian(x)[2]

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        r"""Hessian :math:`\partial_i \partial_j \Phi`, shape ``(N, 3, 3)``."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            grad = self.grad_and_laplacian(x)[1]
            rows = [
                torch.autograd.grad(grad[:, i].sum(), x, retain_graph=i < 2)[0]
                for i in range(3)
            ]
        return torch.stack(rows, dim=1).detach()

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and JSON-able config, for the model file (:mod:`.io`)."""
        return dict(self.state_dict()), dict(self.config)

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], config: dict) -> PotentialNet:
        """Rebuild a network from :meth:`to_state` output."""
        config = dict(config)
        # The value of a pattern speed is in the tensors; only its kind is
        # in the config ("fit": a parameter, "fixed": a buffer).
        kind = config.pop("pattern_speed", None)
        net = cls(**config, pattern_speed=None if kind is None else _KINDS[kind])
        net = net.to(tensors["phi_scale"].dtype)
        tensors = dict(tensors)
        # Model files written before networks had a centre are centred at 0.
        tensors.setdefault("center", net.center)
        net.load_state_dict(tensors)
        return net
