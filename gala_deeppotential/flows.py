"""Batched spline normalizing flows: K independent flows evaluated as one module."""

from __future__ import annotations

__all__ = [
    "FACTORIZATIONS",
    "BatchedFlow",
    "FactorizedFlow",
    "build_flow",
    "flow_class",
]

import math
import warnings
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from .runtime import member_generator
from .splines import rational_quadratic

# nflows 0.14 predates current torch; keep whatever it warns about at import
# out of user output. Every nflows import in the package lives in this module.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from nflows.transforms.coupling import (
        PiecewiseRationalQuadraticCouplingTransform,
    )
    from nflows.utils.torchutils import create_alternating_binary_mask

_ACTIVATIONS = {"relu": nn.functional.relu, "silu": nn.functional.silu}
_LOG_2PI = math.log(2 * math.pi)
# Streams of runtime.member_generator that draw a member's initial weights:
# of a flow, and of the velocity flow of a FactorizedFlow.
INIT_STREAM = 0
CONDITIONAL_STREAM = 2
#: Rows per member in a batch should be a multiple of this, the float32 lanes
#: of the widest CPU vector (AVX-512), for members to be batch-independent
#: (no member's rows in the ragged end of an array; see _SplineCoupling).
ROW_MULTIPLE = 16


class _MemberModule(nn.Module):
    """A module whose parameters and buffers all lead with the member axis K."""


class _Rescale(_MemberModule):
    r"""Per-axis rescaling :math:`y_i = e^{\lambda_i} x_i` for each member."""

    def __init__(self, n_members: int, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(n_members, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = x * self.log_scale.exp()[:, None, :]
        return out, self.log_scale.sum(dim=-1)[:, None].expand(x.shape[:2])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * (-self.log_scale).exp()[:, None, :]


class _LULinear(_MemberModule):
    r"""Invertible linear map :math:`y = P L U x + b` (a Glow 1×1 convolution).

    :math:`P` is a fixed random permutation, :math:`L` unit lower triangular
    and :math:`U` upper triangular with diagonal :math:`e^{d_i}`, so that
    :math:`\ln|\det| = \sum_i d_i`. The inverse uses two triangular solves
    (:func:`torch.linalg.solve_triangular`).
    """

    def __init__(self, dim: int, generators: list[torch.Generator]) -> None:
        super().__init__()
        n_members = len(generators)
        perms = torch.stack([torch.randperm(dim, generator=g) for g in generators])
        self.register_buffer("permutation", torch.eye(dim)[perms])
        self.lower = nn.Parameter(torch.zeros(n_members, dim, dim))
        self.upper = nn.Parameter(torch.zeros(n_members, dim, dim))
        self.log_diag = nn.Parameter(torch.zeros(n_members, dim))
        self.bias = nn.Parameter(torch.zeros(n_members, dim))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.log_diag.shape[-1], dtype=self.lower.dtype)
        eye = eye.to(self.lower.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag_embed(self.log_diag.exp())
        return lower, upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = self._factors()
        weight = self.permutation @ lower @ upper
        out = torch.baddbmm(self.bias[:, None, :], x, weight.transpose(1, 2))
        return out, self.log_diag.sum(dim=-1)[:, None].expand(x.shape[:2])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        lower, upper = self._factors()
        rhs = self.permutation.transpose(1, 2) @ (y - self.bias[:, None, :]).transpose(
            1, 2
        )
        rhs = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, rhs, upper=True).transpose(1, 2)


class _ContextAffine(_MemberModule):
    r"""An affine map whose shift and scale depend on the context, per member.

    :math:`y = e^{a(c)} \odot x + b(c)`, with :math:`a` and :math:`b` from
    an MLP of the context :math:`c` whose last layer starts at zero (the
    identity), and :math:`a` kept in :math:`\pm 5` by a scaled tanh. For
    velocities given positions it follows how the mean and spread of the
    velocities change with position, which the couplings would otherwise
    have to learn.
    """

    def __init__(self, conditioner: _BatchedMLP, dim: int) -> None:
        super().__init__()
        self.conditioner = conditioner
        self.dim = dim

    def _params(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, b, c = context.shape
        params = self.conditioner(context.reshape(k * b, c)).reshape(k, b, -1)
        log_scale, shift = params.split(self.dim, dim=-1)
        return 5 * torch.tanh(log_scale / 5), shift

    def forward(
        self, x: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self._params(context)
        return x * log_scale.exp() + shift, log_scale.sum(dim=-1)

    def inverse(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        log_scale, shift = self._params(context)
        return (y - shift) * (-log_scale).exp()


class _BatchedMLP(_MemberModule):
    """K independent MLP conditioners in one module, evaluated with baddbmm.

    nflows hands the coupling transform's conditioner a 2-D ``(K*B, F)`` batch
    and, for a conditional flow, a ``(K*B, C)`` context, which is appended to
    the features; this net views them as ``(K, B, F + C)`` so each member sees
    only its own rows.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: int,
        n_hidden_layers: int,
        activation: str,
        generators: list[torch.Generator],
    ) -> None:
        super().__init__()
        n_members = self.n_members = len(generators)
        # nflows reads this to scale the spline's softmax inputs at init.
        self.hidden_features = hidden_features
        self.activation = _ACTIVATIONS[activation]
        sizes = [in_features] + [hidden_features] * n_hidden_layers
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in pairwise(sizes):
            # torch.nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(
                nn.Parameter(_uniform((fan_in, fan_out), bound, generators))
            )
            self.biases.append(nn.Parameter(_uniform((1, fan_out), bound, generators)))
        # A zero last layer starts every spline at the same gentle shape.
        self.weights.append(
            nn.Parameter(torch.zeros(n_members, sizes[-1], out_features))
        )
        self.biases.append(nn.Parameter(torch.zeros(n_members, 1, out_features)))

    def forward(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if context is not None:
            inputs = torch.cat([inputs, context], dim=-1)
        h = inputs.reshape(self.n_members, -1, inputs.shape[-1])
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(bias, h, weight)
            if i < last:
                h = self.activation(h)
        return h.reshape(inputs.shape[0], -1)


class _SplineCoupling(PiecewiseRationalQuadraticCouplingTransform):
    """nflows' rational-quadratic spline coupling with linear tails, mask-free.

    nflows gathers the inputs inside the spline box with a boolean mask, so
    its arrays have data-dependent lengths: on a GPU every step waits for the
    host, and on the CPU a member's values can land in the ragged end of an
    array, which vectorised kernels round differently (softplus, sigmoid), so
    a member's gradients would depend on the other members in its batch.
    Here every input goes through the spline, clamped to the box, and the
    identity is selected outside it: the same map, in fixed-size blocks. The
    spline itself is :func:`~gala_deeppotential.splines.rational_quadratic`,
    which works with the bins on the leading axis.
    """

    def _piecewise_cdf(
        self, inputs: torch.Tensor, transform_params: torch.Tensor, inverse=False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bins, bound = self.num_bins, self.tail_bound
        # As nflows: scale the softmax inputs so the initial bins are even.
        scale = math.sqrt(self.transform_net.hidden_features)
        # (rows, features, 3 bins - 1) -> (3 bins - 1, rows * features).
        params = transform_params.movedim(-1, 0).reshape(3 * bins - 1, -1)
        # split, not slices: its gradient is one concatenation, where each
        # slice's would fill a zero array of the whole.
        widths, heights, interior = params.split([bins, bins, bins - 1])
        # The edge derivatives are 1, matching the linear tails.
        edge = math.log(math.expm1(1 - self.min_derivative))
        derivatives = nn.functional.pad(interior, (0, 0, 1, 1), value=edge)
        inside = (inputs >= -bound) & (inputs <= bound)
        outputs, log_det = rational_quadratic(
            inputs.clamp(-bound, bound).reshape(-1),
            widths / scale,
            heights / scale,
            derivatives,
            bound=bound,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
            inverse=inverse,
        )
        outputs, log_det = outputs.view_as(inputs), log_det.view_as(inputs)
        return torch.where(inside, outputs, inputs), torch.where(inside, log_det, 0.0)


class _MemberStack(nn.Module):
    """Selecting and joining the members of a batched flow (K on the lead axis).

    Subclasses keep their constructor arguments in ``config``, including
    ``n_members``, ``seed`` and ``first_member``.
    """

    config: dict

    @property
    def n_members(self) -> int:
        """Number of member flows K."""
        return self.config["n_members"]

    def member_keys(self) -> set[str]:
        """Names in :meth:`state_dict` that lead with the member axis K."""
        keys = set()
        for prefix, module in self.named_modules():
            if isinstance(module, _MemberModule):
                local = module.state_dict(keep_vars=True)
                keys.update(f"{prefix}.{name}" for name in local)
        return keys

    def select(self, members: list[int] | range) -> _MemberStack:
        """A new flow of this class holding copies of the given members, in order."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        keys = self.member_keys()
        state = {
            name: value.index_select(0, index.to(value.device))
            if name in keys
            else value
            for name, value in self.state_dict().items()
        }
        return self._with_state(len(index), state)

    @classmethod
    def concatenate(cls, flows: list[_MemberStack]) -> _MemberStack:
        """One flow holding the members of ``flows``, in order.

        Raises
        ------
        ValueError
            If the flows differ in anything but their members (class,
            architecture, or the shared, non-member buffers).
        """
        if not flows:
            raise ValueError("concatenate needs at least one flow")
        first = flows[0]
        ignore = {"n_members", "seed", "first_member"}
        shared = {k: v for k, v in first.config.items() if k not in ignore}
        for flow in flows:
            mine = {k: v for k, v in flow.config.items() if k not in ignore}
            if type(flow) is not type(first) or mine != shared:
                raise ValueError(
                    "cannot concatenate flows of different architectures: "
                    f"{type(first).__name__} {shared} and "
                    f"{type(flow).__name__} {mine}"
                )
        keys = first.member_keys()
        state = {}
        for name, value in first.state_dict().items():
            parts = [flow.state_dict()[name] for flow in flows]
            if name in keys:
                state[name] = torch.cat(parts)
            elif not all(torch.equal(value, part) for part in parts):
                raise ValueError(f"the flows differ in their shared buffer {name!r}")
            else:
                state[name] = value
        return first._with_state(sum(flow.n_members for flow in flows), state)

    def _with_state(
        self, n_members: int, state: dict[str, torch.Tensor]
    ) -> _MemberStack:
        """A flow like this one with ``n_members`` members, loaded from ``state``."""
        param = next(self.parameters())
        out = type(self)(**{**self.config, "n_members": n_members}).to(param)
        out.load_state_dict(state)
        return out

    def log_prob(self, s: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        """Each member's log density at ``s`` (see ``forward``), shape (K, B)."""
        z, log_det = self(s, *context)
        return log_det - 0.5 * (z.square().sum(dim=-1) + z.shape[-1] * _LOG_2PI)

    def sample(
        self, n: int, generator: torch.Generator, *context: torch.Tensor
    ) -> torch.Tensor:
        """Draw ``n`` points from each member, shape (K, n, D).

        ``generator`` lives on the CPU; noise is drawn there and moved, so a
        seed gives the same noise on every device. A conditional
        :class:`BatchedFlow` takes one context per draw, ``(n, C)`` or
        ``(K, n, C)``.
        """
        param = next(self.parameters())
        z = torch.randn(self.n_members, n, self.config["dim"], generator=generator)
        return self.inverse(z.to(param), *context)

    def _per_member(self, s: torch.Tensor, dim: int) -> torch.Tensor:
        """``s`` as (K, B, dim): shared (B, dim) points expanded over members."""
        if s.ndim == 2 and s.shape[1] == dim:
            return s.expand(self.n_members, *s.shape)
        if s.ndim != 3 or s.shape[0] != self.n_members or s.shape[2] != dim:
            raise ValueError(
                f"expected (B, {dim}) or ({self.n_members}, B, {dim}) "
                f"inputs, got {tuple(s.shape)}"
            )
        return s


class BatchedFlow(_MemberStack):
    r"""K independent normalizing flows over D dimensions, as one module.

    Each member is the flow of Green & Ting (2020): ``n_transforms`` blocks of
    a per-axis rescaling, an invertible 1×1 linear map (LU-parametrised) and
    a rational-quadratic spline coupling transform (Durkan et al. 2019) with
    linear tails outside :math:`\pm` ``tail_bound``, then a standard normal
    base. Every parameter carries a leading member axis K, so all members
    train and evaluate in one batched pass:

    .. math::

        \ln p_k(s) = \ln \mathcal{N}(T_k(s); 0, I)
            + \ln\left|\det \frac{\partial T_k}{\partial s}\right| .

    With ``context_dim`` > 0 the flow is conditional, :math:`p_k(s \mid c)`:
    a context-dependent affine map (:class:`_ContextAffine`) comes first, and
    every coupling conditioner also sees the context :math:`c`.

    Build one with :func:`build_flow`.

    Parameters
    ----------
    dim : int
        Dimension D of the data.
    n_members : int
        Number of independent flows K.
    n_transforms : int
        Blocks (rescale, LU linear, spline coupling) per member.
    n_bins : int
        Spline bins per transformed coordinate.
    hidden_features, n_hidden_layers : int
        Width and depth of each coupling conditioner MLP.
    tail_bound : float
        Half-width of the spline box, in scaled units; the map is the
        identity outside it.
    activation : {"silu", "relu"}
        Conditioner nonlinearity.
    seed : int
        Seed of the initial weights and permutations.
    first_member : int
        Global index of member 0. Member k's initial weights and permutations
        are drawn from :func:`~gala_deeppotential.runtime.member_generator`
        with ``(seed, first_member + k)`` alone, so a flow of members
        [a, b) built with ``first_member=a`` starts exactly as members a to
        b - 1 of a larger flow with the same seed.
    context_dim : int
        Dimension C of the conditioning variables; 0 for an unconditional
        flow.
    stream : int
        Stream of :func:`~gala_deeppotential.runtime.member_generator` that
        draws the initial weights; two flows of one member need different
        streams to start differently.
    """

    def __init__(
        self,
        dim: int,
        n_members: int,
        n_transforms: int,
        n_bins: int,
        hidden_features: int,
        n_hidden_layers: int,
        tail_bound: float,
        activation: str,
        seed: int,
        first_member: int = 0,
        context_dim: int = 0,
        stream: int = INIT_STREAM,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}")
        self.config = {
            "dim": int(dim),
            "n_members": int(n_members),
            "n_transforms": int(n_transforms),
            "n_bins": int(n_bins),
            "hidden_features": int(hidden_features),
            "n_hidden_layers": int(n_hidden_layers),
            "tail_bound": float(tail_bound),
            "activation": activation,
            "seed": int(seed),
            "first_member": int(first_member),
            "context_dim": int(context_dim),
            "stream": int(stream),
        }
        generators = [
            member_generator(seed, first_member + k, stream) for k in range(n_members)
        ]

        def conditioner(in_features: int, out_features: int) -> _BatchedMLP:
            return _BatchedMLP(
                in_features + context_dim,
                out_features,
                hidden_features,
                n_hidden_layers,
                activation,
                generators,
            )

        self.context_affine = (
            _ContextAffine(conditioner(0, 2 * dim), dim) if context_dim else None
        )
        steps = []
        for i in range(n_transforms):
            coupling = _SplineCoupling(
                mask=create_alternating_binary_mask(dim, even=i % 2 == 0),
                transform_net_create_fn=conditioner,
                num_bins=n_bins,
                tails="linear",
                tail_bound=tail_bound,
            )
            steps.append(
                nn.ModuleList(
                    [
                        _Rescale(n_members, dim),
                        _LULinear(dim, generators),
                        coupling,
                    ]
                )
            )
        self.steps = nn.ModuleList(steps)

    @property
    def dim(self) -> int:
        """Dimension D of the data."""
        return self.config["dim"]

    def _context(self, context: torch.Tensor | None) -> torch.Tensor | None:
        c = self.config["context_dim"]
        if (context is None) != (c == 0):
            raise ValueError(
                f"this flow takes a ({c}-dimensional) context"
                if c
                else "this flow is unconditional; pass no context"
            )
        return None if context is None else self._per_member(context, c)

    def forward(
        self, s: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Map data to noise: :math:`z = T_k(s)` and :math:`\ln|\det \partial_s T_k|`.

        Parameters
        ----------
        s : :class:`torch.Tensor`, shape (B, D) or (K, B, D)
            Points in scaled coordinates: shared by all members, or one
            batch per member.
        context : :class:`torch.Tensor`, shape (B, C) or (K, B, C), optional
            The conditioning variables of each point, for a conditional flow.

        Returns
        -------
        z : :class:`torch.Tensor`, shape (K, B, D)
        log_det : :class:`torch.Tensor`, shape (K, B)
        """
        h = self._per_member(s, self.dim)
        context = self._context(context)
        k, b, d = h.shape
        log_det = h.new_zeros(k, b)
        flat_context = None
        if context is not None:
            h, log_det = self.context_affine(h, context)
            flat_context = context.reshape(k * b, -1)
        for rescale, linear, coupling in self.steps:
            h, ld = rescale(h)
            log_det = log_det + ld
            h, ld = linear(h)
            log_det = log_det + ld
            h, ld = coupling(h.reshape(k * b, d), flat_context)
            h = h.reshape(k, b, d)
            log_det = log_det + ld.reshape(k, b)
        return h, log_det

    def inverse(
        self, z: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Map noise ``(K, B, D)`` to data, :math:`s = T_k^{-1}(z)`."""
        h = self._per_member(z, self.dim)
        context = self._context(context)
        k, b, d = h.shape
        flat_context = None if context is None else context.reshape(k * b, -1)
        for rescale, linear, coupling in reversed(self.steps):
            h, _ = coupling.inverse(h.reshape(k * b, d), flat_context)
            h = linear.inverse(h.reshape(k, b, d))
            h = rescale.inverse(h)
        if context is not None:
            h = self.context_affine.inverse(h, context)
        return h


class FactorizedFlow(_MemberStack):
    r"""K flows over phase space as :math:`p_k(x)\, p_k(v \mid x)`, as one module.

    The positions, the first half of the D coordinates, follow an
    unconditional :class:`BatchedFlow`; the velocities, the second half,
    follow a :class:`BatchedFlow` conditioned on the positions. The
    velocity gradient :math:`\nabla_v \ln f = \nabla_v \ln p(v \mid x)` then
    comes from a model that spends all its capacity on velocities at given
    positions. It has the interface of an unconditional
    :class:`BatchedFlow`.

    Parameters
    ----------
    dim : int
        Dimension D of the data, even: positions, then as many velocities.
    **options
        The other parameters of :class:`BatchedFlow` (``n_members``,
        ``n_transforms``, ...), shared by the two flows.
    """

    def __init__(self, dim: int, **options: Any) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"a factorized flow needs an even dim, got {dim}")
        half = dim // 2
        self.positions = BatchedFlow(half, **options)
        self.velocities = BatchedFlow(
            half, **options, context_dim=half, stream=CONDITIONAL_STREAM
        )
        own = {"context_dim", "stream"}
        self.config = {
            **{k: v for k, v in self.positions.config.items() if k not in own},
            "dim": int(dim),
        }

    @property
    def dim(self) -> int:
        """Dimension D of the data."""
        return self.config["dim"]

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Map ``s = (x, v)`` to noise, as :meth:`BatchedFlow.forward`.

        The noise is that of :math:`x` under the position flow, then that of
        :math:`v` under the velocity flow given :math:`x`; the log
        determinants add.
        """
        x, v = self._per_member(s, self.dim).split(self.dim // 2, dim=-1)
        z_x, log_det_x = self.positions(x)
        z_v, log_det_v = self.velocities(v, x)
        return torch.cat([z_x, z_v], dim=-1), log_det_x + log_det_v

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Map noise ``(K, B, D)`` to data: the positions first, then v given them."""
        z_x, z_v = self._per_member(z, self.dim).split(self.dim // 2, dim=-1)
        x = self.positions.inverse(z_x)
        return torch.cat([x, self.velocities.inverse(z_v, x)], dim=-1)


def build_flow(
    dim: int = 6,
    *,
    n_members: int = 1,
    n_transforms: int = 4,
    n_bins: int = 8,
    hidden_features: int = 64,
    n_hidden_layers: int = 2,
    tail_bound: float = 5.0,
    activation: str = "silu",
    seed: int = 0,
    first_member: int = 0,
    factorization: str = "joint",
) -> BatchedFlow | FactorizedFlow:
    """Build K independent spline flows from nflows parts, batched as one module.

    Parameters
    ----------
    dim : int
        Dimension D of the data (6 for phase space).
    n_members : int
        Number of independent flows K.
    n_transforms : int
        Blocks per flow (rescale, LU linear, spline coupling); 4 as in Green
        & Ting (2020).
    n_bins : int
        Spline bins per transformed coordinate.
    hidden_features, n_hidden_layers : int
        Width and depth of each coupling conditioner.
    tail_bound : float
        Half-width of the spline box in scaled units.
    activation : {"silu", "relu"}
        Conditioner nonlinearity.
    seed : int
        Seed of the initial weights and permutations.
    first_member : int
        Global index of the first member: member k starts as member
        ``first_member + k`` of any flow with the same seed (see
        :class:`BatchedFlow`).
    factorization : {"joint", "conditional"}
        One flow over all D coordinates (:class:`BatchedFlow`), or a flow of
        the first half times a flow of the second half conditioned on the
        first (:class:`FactorizedFlow`, :math:`p(x)\\,p(v \\mid x)`).

    Returns
    -------
    flow : :class:`BatchedFlow` or :class:`FactorizedFlow`
        A float32 module on the CPU; move it with ``.to(device)``.

    Examples
    --------
    >>> flow = build_flow(n_members=3)
    >>> flow.log_prob(torch.zeros(5, 6)).shape
    torch.Size([3, 5])
    """
    return flow_class(factorization)(
        dim=dim,
        n_members=n_members,
        n_transforms=n_transforms,
        n_bins=n_bins,
        hidden_features=hidden_features,
        n_hidden_layers=n_hidden_layers,
        tail_bound=tail_bound,
        activation=activation,
        seed=seed,
        first_member=first_member,
    )


#: The flow classes of :func:`build_flow`, by ``factorization``.
FACTORIZATIONS = {"joint": BatchedFlow, "conditional": FactorizedFlow}


def flow_class(factorization: str) -> type[BatchedFlow] | type[FactorizedFlow]:
    """The flow class for ``factorization`` ("joint" or "conditional").

    Raises
    ------
    ValueError
        For any other name.
    """
    if factorization not in FACTORIZATIONS:
        raise ValueError(
            f"factorization must be one of {sorted(FACTORIZATIONS)}, "
            f"got {factorization!r}"
        )
    return FACTORIZATIONS[factorization]


def _uniform(
    shape: tuple[int, ...], bound: float, generators: list[torch.Generator]
) -> torch.Tensor:
    """U(-bound, bound) draws of ``shape``, one per member, stacked: (K, *shape)."""
    return torch.stack(
        [(2 * torch.rand(shape, generator=g) - 1) * bound for g in generators]
    )
