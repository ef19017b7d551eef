from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

import gala_deeppotential
from gala_deeppotential.flows import build_flow


def _perturbed(flow, scale=0.1):
    """A flow with random weights everywhere, so no layer is the identity."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return flow


@pytest.fixture(params=["joint", "conditional"])
def flow(request):
    return _perturbed(
        build_flow(
            n_members=3, n_bins=6, hidden_features=16, factorization=request.param
        )
    ).double()


def test_shapes_and_member_broadcast(flow):
    s = torch.randn(5, 6, dtype=torch.float64)
    assert flow.log_prob(s).shape == (3, 5)
    z, log_det = flow(s.expand(3, 5, 6))
    assert z.shape == (3, 5, 6) and log_det.shape == (3, 5)
    with pytest.raises(ValueError, match="expected"):
        flow.log_prob(torch.zeros(2, 5, 6, dtype=torch.float64))


def test_inverse_round_trips_inside_and_outside_the_spline_box(flow):
    # Scale 4 puts about a third of the coordinates beyond tail_bound = 5.
    s = 4 * torch.randn(3, 200, 6, dtype=torch.float64)
    z, _ = flow(s)
    torch.testing.assert_close(flow.inverse(z), s, rtol=0, atol=1e-9)


def test_log_det_matches_the_autograd_jacobian(flow):
    s = 3 * torch.randn(4, 6, dtype=torch.float64)
    _, log_det = flow(s)
    for k in range(3):
        for i in range(4):
            jac = torch.autograd.functional.jacobian(
                lambda p, k=k: flow(p[None].expand(3, 1, 6))[0][k, 0], s[i]
            )
            assert torch.linalg.slogdet(jac)[1].item() == pytest.approx(
                log_det[k, i].item(), abs=1e-9
            )


def test_members_are_independent_and_batched_equals_alone(flow):
    s = torch.randn(3, 64, 6, dtype=torch.float64)
    flow.log_prob(s)[1].sum().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None, name
        assert torch.all(p.grad[[0, 2]] == 0), name
        assert torch.any(p.grad[1] != 0), name
    alone = flow.select([1])
    torch.testing.assert_close(
        alone.log_prob(s[1:2]), flow.log_prob(s)[1:2], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("factorization", ["joint", "conditional"])
def test_sampling_draws_from_each_member(factorization):
    flow = _perturbed(
        build_flow(n_members=2, hidden_features=16, factorization=factorization)
    )
    samples = flow.sample(4000, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 4000, 6)
    # Sampling inverts the flow: mapping the samples forward recovers the
    # base-normal noise drawn from the same seed.
    z, log_det = flow(samples)
    torch.testing.assert_close(
        z, torch.randn(2, 4000, 6, generator=torch.Generator().manual_seed(0))
    )
    assert torch.isfinite(log_det).all()


def test_no_warnings_and_nflows_stays_in_flows_py():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flow = build_flow(n_members=2)
        flow.log_prob(torch.randn(8, 6)).sum().backward()
        flow.sample(8, torch.Generator().manual_seed(0))
    package = Path(gala_deeppotential.__file__).parent
    importers = {
        path.name
        for path in package.glob("*.py")
        if re.search(r"^\s*(from|import) nflows", path.read_text(), re.MULTILINE)
    }
    assert importers == {"flows.py"}


def test_seed_fixes_initial_weights_and_permutations():
    a, b, c = build_flow(seed=1), build_flow(seed=1), build_flow(seed=2)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    assert any(
        not torch.equal(value, c.state_dict()[name])
        for name, value in a.state_dict().items()
    )


@pytest.mark.parametrize("factorization", ["joint", "conditional"])
def test_members_start_the_same_in_any_shard(factorization):
    whole = build_flow(n_members=5, seed=3, factorization=factorization)
    shard = build_flow(n_members=2, seed=3, first_member=2, factorization=factorization)
    for name, value in whole.select([2, 3]).state_dict().items():
        assert torch.equal(value, shard.state_dict()[name]), name
    first = build_flow(n_members=2, seed=3, factorization=factorization)
    joined = type(whole).concatenate([first, shard])
    for name, value in whole.select(range(4)).state_dict().items():
        assert torch.equal(value, joined.state_dict()[name]), name
    with pytest.raises(ValueError, match="architectures"):
        type(whole).concatenate([whole, build_flow(n_bins=4)])


def test_conditional_flow_needs_its_context_and_the_velocity_flow_differs():
    flow = build_flow(n_members=1, factorization="conditional", seed=0)
    velocities = flow.velocities
    with pytest.raises(ValueError, match="context"):
        velocities.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="unconditional"):
        flow.positions.log_prob(torch.zeros(4, 3), torch.zeros(4, 3))
    # The two halves start from different weights (their own streams).
    a = flow.positions.steps[0][2].transform_net.weights[0]
    b = velocities.steps[0][2].transform_net.weights[0][:, : a.shape[1]]
    assert not torch.equal(a[:, :1], b[:, :1])
    with pytest.raises(ValueError, match="factorization"):
        build_flow(factorization="autoregressive")


def test_linear_tails_are_the_identity_and_continuous_at_the_box():
    flow = _perturbed(build_flow(n_members=2, hidden_features=16)).double()
    coupling = flow.steps[0][2]
    bound = coupling.tail_bound
    # Transformed coordinates just inside, on and beyond the box edges.
    edge = torch.tensor([-2 * bound, -bound, -bound + 1e-9, bound - 1e-9, bound, 9.0])
    s = torch.zeros(2 * len(edge), 6, dtype=torch.float64)
    s[:, 1] = edge.repeat(2).double()
    out, log_det = coupling(s)
    outside = edge.abs().repeat(2) > bound
    torch.testing.assert_close(out[outside, 1], s[outside, 1], rtol=0, atol=0)
    # Continuous across the edge: the spline maps the edge to itself.
    torch.testing.assert_close(out[:, 1][1::6], s[:, 1][1::6], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[:, 1][2::6], s[:, 1][2::6], rtol=0, atol=1e-8)
    assert torch.isfinite(log_det).all()
