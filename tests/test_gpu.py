"""CUDA results against CPU results. Run with ``pytest -m gpu`` on a GPU machine.

Each test skips cleanly where torch sees no CUDA device. On a GPU, float32
kernels round differently from the CPU ones, so evaluations of the same
weights are compared to float32 rounding, and trainings, whose rounding
differences grow step by step, are compared through their accuracy against
the analytic Plummer truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gala_deeppotential.df import FlowEnsemble
from gala_deeppotential.flows import build_flow
from gala_deeppotential.gala_potential import DeepPotential
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.potential import fit_potential

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _perturbed_flow():
    flow = build_flow(n_members=3, hidden_features=16, seed=1)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return flow


@pytest.fixture(scope="module")
def plummer_df():
    """Two flows fitted on the GPU to 4096 Plummer stars."""
    x, v = PlummerTruth().sample(4096, seed=5)
    df = FlowEnsemble(n_flows=2, device="cuda").fit(
        np.hstack([x, v]), epochs=4, batch_size=256, seed=0
    )
    return df


def test_flow_log_prob_and_gradients_match_the_cpu():
    flow = _perturbed_flow().double()
    s = 3 * torch.randn(3, 500, 6, dtype=torch.float64)
    s_cpu = s.clone().requires_grad_(True)
    lp_cpu = flow.log_prob(s_cpu)
    (grad_cpu,) = torch.autograd.grad(lp_cpu.sum(), s_cpu)
    flow.cuda()
    s_gpu = s.cuda().requires_grad_(True)
    lp_gpu = flow.log_prob(s_gpu)
    (grad_gpu,) = torch.autograd.grad(lp_gpu.sum(), s_gpu)
    # float64 on both: the same numbers to rounding.
    torch.testing.assert_close(lp_gpu.cpu(), lp_cpu.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_gpu.cpu(), grad_cpu, rtol=1e-9, atol=1e-10)
    z = torch.randn(3, 200, 6, dtype=torch.float64)
    torch.testing.assert_close(
        flow.inverse(z.cuda()).cpu(), flow.cpu().inverse(z), rtol=1e-9, atol=1e-9
    )


def test_ensemble_trained_on_gpu_evaluates_like_its_cpu_copy(plummer_df, tmp_path):
    df = plummer_df
    assert next(df.flow.parameters()).device.type == "cuda"
    cpu = FlowEnsemble.load(df.save(tmp_path / "df.pt"), device="cpu")
    x, v = PlummerTruth().sample(2000, seed=6)
    log_gpu = df.log_prob(x, v)
    assert log_gpu.device.type == "cuda"
    torch.testing.assert_close(log_gpu.cpu(), cpu.log_prob(x, v), rtol=1e-4, atol=1e-4)
    for g_gpu, g_cpu in zip(
        df.grad_log_prob(x, v), cpu.grad_log_prob(x, v), strict=True
    ):
        assert g_gpu.device.type == "cuda"
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-3, atol=1e-4)
    # Sampling draws its noise on the CPU, so the same seed gives the same
    # points on both devices, to float32 rounding of the inverse flow.
    xs_gpu, vs_gpu = df.sample(1000, seed=2)
    xs_cpu, vs_cpu = cpu.sample(1000, seed=2)
    assert xs_gpu.device.type == "cuda"
    torch.testing.assert_close(xs_gpu.cpu(), xs_cpu, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(vs_gpu.cpu(), vs_cpu, rtol=1e-3, atol=1e-4)


def test_ensemble_fit_on_gpu_is_as_good_as_on_cpu(plummer_df):
    x, v = PlummerTruth().sample(4096, seed=5)
    cpu = FlowEnsemble(n_flows=2).fit(
        np.hstack([x, v]), epochs=4, batch_size=256, seed=0
    )
    gpu_val = np.asarray(plummer_df.history["val_loss"][-1])
    cpu_val = np.asarray(cpu.history["val_loss"][-1])
    # Same seeds and batches; only rounding differs, so the held-out losses
    # agree far better than the member-to-member scatter (~0.02 nats).
    np.testing.assert_allclose(gpu_val, cpu_val, atol=5e-3)


def test_potential_fit_on_gpu_recovers_plummer_like_the_cpu():
    truth = PlummerTruth()
    x, v = truth.sample(2**13, seed=1)
    points = (x, v, *truth.grad_log_f(x, v))
    options = {"n_steps": 400, "batch_size": 512, "seed": 0, "progress": False}
    fits = {d: fit_potential(points, device=d, **options) for d in ("cpu", "cuda")}
    x_test, _ = truth.sample(4096, seed=5)
    x_test = x_test[np.linalg.norm(x_test, axis=1) < 3]
    errors = {}
    for device, fit in fits.items():
        pot = DeepPotential.from_fit(fit)
        grad = pot.gradient(x_test.T).value.T
        g_true = truth.grad_phi(x_test)
        rel = np.linalg.norm(grad - g_true, axis=1) / np.linalg.norm(g_true, axis=1)
        errors[device] = float(np.median(rel))
    # tests/test_potential.py measures 0.8% on the CPU at this size.
    assert errors["cuda"] < 0.015
    assert abs(errors["cuda"] - errors["cpu"]) < 0.005
    # The returned network lives on the CPU, ready for gala.
    assert next(fits["cuda"].net.parameters()).device.type == "cpu"
