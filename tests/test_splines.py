"""The rational-quadratic spline against nflows' reference implementation."""

from __future__ import annotations

import warnings

import pytest
import torch

from gala_deeppotential.splines import rational_quadratic

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from nflows.transforms.splines.rational_quadratic import (
        rational_quadratic_spline,
    )

BOUND = 5.0
FLOORS = {"min_bin_width": 1e-3, "min_bin_height": 1e-3, "min_derivative": 1e-3}


def _case(n_bins: int, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    # Wide parameters give uneven bins, steep and flat ones; the inputs
    # include both ends of the box.
    params = 3 * torch.randn(3 * n_bins + 1, n, generator=g, dtype=torch.float64)
    inputs = (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * BOUND
    inputs[:2] = torch.tensor([-BOUND, BOUND], dtype=torch.float64)
    return inputs, params[:n_bins], params[n_bins : 2 * n_bins], params[2 * n_bins :]


def _reference(inputs, widths, heights, derivatives, inverse):
    return rational_quadratic_spline(
        inputs,
        widths.T,
        heights.T,
        derivatives.T,
        inverse=inverse,
        left=-BOUND,
        right=BOUND,
        bottom=-BOUND,
        top=BOUND,
        **FLOORS,
    )


@pytest.mark.parametrize("n_bins", [2, 8, 16])
@pytest.mark.parametrize("inverse", [False, True])
def test_values_and_log_det_match_nflows(n_bins, inverse):
    args = _case(n_bins, 4000, seed=n_bins)
    out, log_det = rational_quadratic(*args, bound=BOUND, inverse=inverse, **FLOORS)
    ref_out, ref_log_det = _reference(*args, inverse)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det, ref_log_det, rtol=0, atol=1e-10)


def test_inverse_undoes_forward_and_negates_its_log_det():
    inputs, *params = _case(8, 4000, seed=1)
    out, log_det = rational_quadratic(inputs, *params, bound=BOUND, **FLOORS)
    back, log_det_back = rational_quadratic(
        out, *params, bound=BOUND, inverse=True, **FLOORS
    )
    # Bins as narrow as 1e-3 of the box with slopes up to e^9 lose about
    # six digits of float64 in the round trip.
    torch.testing.assert_close(back, inputs, rtol=0, atol=1e-8)
    torch.testing.assert_close(log_det_back, -log_det, rtol=0, atol=1e-7)


def test_log_det_is_the_slope_and_gradients_match_nflows():
    inputs, *params = _case(8, 500, seed=2)
    inputs.requires_grad_(True)
    for p in params:
        p.requires_grad_(True)
    out, log_det = rational_quadratic(inputs, *params, bound=BOUND, **FLOORS)
    (slope,) = torch.autograd.grad(out.sum(), inputs, retain_graph=True)
    torch.testing.assert_close(slope.log(), log_det, rtol=0, atol=1e-10)
    mine = torch.autograd.grad((out + log_det).sum(), [inputs, *params])
    ref_out, ref_log_det = _reference(inputs, *params, inverse=False)
    theirs = torch.autograd.grad((ref_out + ref_log_det).sum(), [inputs, *params])
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ends_of_the_box_map_to_themselves():
    _, *params = _case(8, 2, seed=3)
    ends = torch.tensor([-BOUND, BOUND], dtype=torch.float64)
    for inverse in (False, True):
        out, log_det = rational_quadratic(
            ends, *params, bound=BOUND, inverse=inverse, **FLOORS
        )
        torch.testing.assert_close(out, ends, rtol=0, atol=1e-12)
        assert torch.isfinite(log_det).all()
