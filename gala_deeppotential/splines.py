r"""Monotonic rational-quadratic splines, laid out with the bins leading.

The spline of Durkan et al. (2019, "Neural Spline Flows") maps
:math:`[-B, B]` onto itself through :math:`K` bins whose widths, heights
and knot derivatives come from unnormalized parameters: widths and heights
through a softmax (with a floor), derivatives through a softplus (with a
floor). This is the map of nflows' ``rational_quadratic_spline`` with the
same floors and formulas, computed with the bin axis first: every array is
``(K, M)`` for M inputs, so that the softmax, the cumulative sum and the
bin lookup each run over K rows of M contiguous values. With the bins last,
as nflows keeps them, the softmax over a last axis of 8 values runs about
15 times slower on a CPU than over a leading one, and it alone took a
quarter of a training step.

No value is checked on the host (nflows checks the domain and the inverse's
discriminant with ``.all()``), so a step on a GPU never waits for it; the
caller clamps inputs to the box.
"""

from __future__ import annotations

__all__ = ["rational_quadratic"]

import torch
from torch.nn import functional


def rational_quadratic(
    inputs: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    *,
    bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
    inverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Apply a rational-quadratic spline on :math:`[-B, B]`, or its inverse.

    Parameters
    ----------
    inputs : :class:`torch.Tensor`, shape (M,)
        Values inside the box :math:`[-B, B]`.
    widths, heights : :class:`torch.Tensor`, shape (K, M)
        Unnormalized bin widths and heights, bins first.
    derivatives : :class:`torch.Tensor`, shape (K + 1, M)
        Unnormalized derivatives at the K + 1 knots, the two ends included.
    bound : float
        The half-width B of the box, in the inputs' units.
    min_bin_width, min_bin_height, min_derivative : float
        Floors of the bins' widths and heights (fractions of the box) and
        of the knots' derivatives.
    inverse : bool
        Apply the inverse map.

    Returns
    -------
    outputs : :class:`torch.Tensor`, shape (M,)
    log_det : :class:`torch.Tensor`, shape (M,)
        :math:`\ln |\mathrm{d}\,\mathrm{out} / \mathrm{d}\,\mathrm{in}|`
        of the map applied.
    """
    x_knots, x_sizes = _knots(widths, bound, min_bin_width)
    y_knots, y_sizes = _knots(heights, bound, min_bin_height)
    slopes = min_derivative + functional.softplus(derivatives)
    # The bin of each input: how many interior knots lie at or below it.
    knots = y_knots if inverse else x_knots
    index = (inputs >= knots[1:-1]).sum(dim=0, keepdim=True)

    def take(values: torch.Tensor) -> torch.Tensor:
        return values.gather(0, index)[0]

    x0, width = take(x_knots), take(x_sizes)
    y0, height = take(y_knots), take(y_sizes)
    delta = height / width
    d0, d1 = take(slopes), take(slopes[1:])
    curvature = d0 + d1 - 2 * delta
    theta = (
        _inverse_theta(inputs - y0, height, delta, d0, curvature)
        if inverse
        else (inputs - x0) / width
    )
    theta_one_minus_theta = theta * (1 - theta)
    denominator = delta + curvature * theta_one_minus_theta
    if inverse:
        outputs = theta * width + x0
    else:
        numerator = height * (delta * theta.pow(2) + d0 * theta_one_minus_theta)
        outputs = y0 + numerator / denominator
    slope_numerator = delta.pow(2) * (
        d1 * theta.pow(2) + 2 * delta * theta_one_minus_theta + d0 * (1 - theta).pow(2)
    )
    log_det = torch.log(slope_numerator) - 2 * torch.log(denominator)
    return outputs, -log_det if inverse else log_det


def _inverse_theta(
    offset: torch.Tensor,
    height: torch.Tensor,
    delta: torch.Tensor,
    d0: torch.Tensor,
    curvature: torch.Tensor,
) -> torch.Tensor:
    """The position in its bin, in [0, 1], of the point that the spline maps
    ``offset`` above the bin's bottom: the root of a quadratic, in the form
    without cancellation."""
    a = offset * curvature + height * (delta - d0)
    b = height * d0 - offset * curvature
    c = -delta * offset
    return (2 * c) / (-b - torch.sqrt(b.pow(2) - 4 * a * c))


def _knots(
    unnormalized: torch.Tensor, bound: float, min_size: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The K + 1 knots on [-bound, bound] and the K bin sizes, bins first."""
    n_bins = unnormalized.shape[0]
    sizes = min_size + (1 - min_size * n_bins) * torch.softmax(unnormalized, dim=0)
    interior = 2 * bound * torch.cumsum(sizes[:-1], dim=0) - bound
    # The ends are exact, whatever the rounding of the sum.
    ends = torch.full_like(interior[:1], bound)
    knots = torch.cat([-ends, interior, ends])
    return knots, knots[1:] - knots[:-1]
