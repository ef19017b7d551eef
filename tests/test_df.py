from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gala_deeppotential import io
from gala_deeppotential.df import FlowEnsemble
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.training import fit_distribution_function

# A correlated 6-D Gaussian in "galactic-looking" units: positions of a few
# kpc around (8, 0, 0.1), velocities of ~100 km/s around (0, 220, 0).
_SCALE = np.array([2.0, 2.0, 1.0, 100.0, 100.0, 50.0])
_MEAN = np.array([8.0, 0.0, 0.1, 0.0, 220.0, 0.0])


def _gaussian():
    rng = np.random.default_rng(42)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    cov = q @ np.diag(np.linspace(0.5, 2.0, 6)) @ q.T * np.outer(_SCALE, _SCALE)
    return cov, np.linalg.inv(cov)


def _gaussian_log_pdf(y, cov, precision):
    d = y - _MEAN
    _, logdet = np.linalg.slogdet(cov)
    maha = np.einsum("ni,ij,nj->n", d, precision, d)
    return -0.5 * (maha + logdet + 6 * np.log(2 * np.pi)), -d @ precision


@pytest.fixture(scope="module", params=["joint", "conditional"])
def gaussian_fit(request):
    """Two flows fitted to 4096 draws of the Gaussian (about 10 s on one thread)."""
    cov, precision = _gaussian()
    rng = np.random.default_rng(1)
    data = rng.multivariate_normal(_MEAN, cov, size=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ensemble = fit_distribution_function(
            data,
            n_flows=2,
            asinh_axes=(),
            epochs=20,
            batch_size=256,
            seed=0,
            factorization=request.param,
        )
    test = rng.multivariate_normal(_MEAN, cov, size=4000)
    return ensemble, cov, precision, test


def test_recovers_gaussian_log_f_and_gradients(gaussian_fit):
    ensemble, cov, precision, test = gaussian_fit
    log_true, grad_true = _gaussian_log_pdf(test, cov, precision)
    log_model = ensemble.log_prob(test[:, :3], test[:, 3:]).double().numpy()
    # Measured: KL 0.020 nats, median |d ln f| 0.13, median gradient error 28%
    # (joint); 0.025, 0.14 and 24% (conditional).
    assert np.mean(log_true - log_model) < 0.05
    assert np.median(np.abs(log_true - log_model)) < 0.2
    gx, gv = ensemble.grad_log_prob(test[:, :3], test[:, 3:])
    grad = torch.cat([gx, gv], dim=1).double().numpy()
    rel = np.linalg.norm(grad - grad_true, axis=1) / np.linalg.norm(grad_true, axis=1)
    assert np.median(rel) < 0.5
    # Per-axis units: velocity gradients are ~100x smaller, and must be too.
    ratio = np.median(np.abs(grad[:, 3:])) / np.median(np.abs(grad_true[:, 3:]))
    assert 0.7 < ratio < 1.4


def test_mixture_is_normalised_and_is_the_mean_of_members(gaussian_fit):
    ensemble, cov, precision, test = gaussian_fit
    log_model = ensemble.log_prob(test[:, :3], test[:, 3:]).double().numpy()
    log_true, _ = _gaussian_log_pdf(test, cov, precision)
    # Importance sampling with the true Gaussian: E_q[f/q] = integral of f = 1.
    # Measured 1.003 +- 0.003.
    assert np.mean(np.exp(log_model - log_true)) == pytest.approx(1.0, abs=0.02)
    members = torch.stack(
        [ensemble.member(k).log_prob(test[:, :3], test[:, 3:]) for k in range(2)]
    )
    mixture = torch.logsumexp(members, dim=0) - np.log(2)
    torch.testing.assert_close(
        ensemble.log_prob(test[:, :3], test[:, 3:]), mixture, rtol=0, atol=1e-5
    )
    assert not torch.allclose(members[0], members[1])


def test_grad_log_prob_matches_finite_differences(gaussian_fit, tmp_path):
    ensemble = FlowEnsemble.load(gaussian_fit[0].save(tmp_path / "g.pt"))
    ensemble.flow.double()
    y = gaussian_fit[3][:8]
    gx, gv = ensemble.grad_log_prob(y[:, :3], y[:, 3:])
    grad = torch.cat([gx, gv], dim=1).numpy()
    fd = np.empty_like(grad)
    for j in range(6):
        h = np.zeros(6)
        h[j] = 1e-6 * _SCALE[j]
        up = ensemble.log_prob((y + h)[:, :3], (y + h)[:, 3:]).numpy()
        down = ensemble.log_prob((y - h)[:, :3], (y - h)[:, 3:]).numpy()
        fd[:, j] = (up - down) / (2 * h[j])
    np.testing.assert_allclose(grad * _SCALE, fd * _SCALE, rtol=1e-5, atol=1e-7)


def test_grad_log_prob_batches_agree(gaussian_fit):
    ensemble, *_, test = gaussian_fit
    whole = ensemble.grad_log_prob(test[:, :3], test[:, 3:])
    pieces = ensemble.grad_log_prob(test[:, :3], test[:, 3:], batch_size=333)
    for a, b in zip(whole, pieces, strict=True):
        # float32 kernels round differently for other batch shapes.
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_sample_follows_the_fitted_density(gaussian_fit):
    ensemble, cov, *_ = gaussian_fit
    x, v = ensemble.sample(20000, seed=3)
    assert x.shape == (20000, 3) and v.shape == (20000, 3)
    assert x.dtype == torch.float32
    y = torch.cat([x, v], dim=1).double().numpy()
    sigma = np.sqrt(np.diag(cov))
    assert np.all(np.abs(y.mean(0) - _MEAN) < 0.05 * sigma)
    assert np.all(np.abs(np.cov(y.T) - cov) < 0.1 * np.outer(sigma, sigma))
    again = ensemble.sample(20000, seed=3)
    assert torch.equal(again[0], x) and torch.equal(again[1], v)
    assert not torch.equal(ensemble.sample(20000, seed=4)[0], x)


def test_save_load_round_trip_is_identical(gaussian_fit, tmp_path):
    ensemble, *_, test = gaussian_fit
    loaded = FlowEnsemble.load(ensemble.save(tmp_path / "df.pt"))
    assert torch.equal(
        loaded.log_prob(test[:, :3], test[:, 3:]),
        ensemble.log_prob(test[:, :3], test[:, 3:]),
    )
    assert loaded.history == ensemble.history
    assert len(loaded) == 2 and loaded.config == ensemble.config


def _small_data(n=1200):
    x, v = PlummerTruth().sample(n, seed=5)
    return np.hstack([x, v])


def test_history_and_member_access():
    data = _small_data()
    ensemble = FlowEnsemble(n_flows=3).fit(data, epochs=2, batch_size=256)
    h = ensemble.history
    assert h["epoch"] == [1, 2] and np.shape(h["val_loss"]) == (2, 3)
    assert len(h["best_epoch"]) == 3 and h["wall_s"][1] > h["wall_s"][0]
    one = ensemble.member(-1)
    assert len(one) == 1 and np.shape(one.history["val_loss"]) == (2, 1)
    x, v = data[:10, :3], data[:10, 3:]
    torch.testing.assert_close(
        one.log_prob(x, v),
        ensemble.member(2).log_prob(x, v),
    )
    with pytest.raises(IndexError):
        ensemble.member(3)


def test_bad_points_and_unfitted_use_are_refused(gaussian_fit):
    ensemble = gaussian_fit[0]
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        ensemble.log_prob(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="different numbers"):
        ensemble.grad_log_prob(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="finite"):
        ensemble.log_prob(np.full((1, 3), np.nan), np.zeros((1, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        FlowEnsemble().sample(3)


def test_device_names_are_normalised():
    assert FlowEnsemble(device="cpu").device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            FlowEnsemble(device="gpu")


@pytest.mark.gpu
def test_fit_on_gpu():
    ensemble = FlowEnsemble(n_flows=2, device="gpu").fit(_small_data(), epochs=2)
    x, v = ensemble.sample(100, seed=0)
    assert x.device.type == "cuda"
    assert torch.isfinite(ensemble.log_prob(x, v)).all()


def test_model_files_naming_the_transforms_n_steps_are_read(gaussian_fit, tmp_path):
    # Version 0.1 wrote the flow's blocks as "n_steps" in the model file.
    ensemble = gaussian_fit[0]
    tensors, meta = io.load(ensemble.save(tmp_path / "df.pt"))
    meta["config"]["n_steps"] = meta["config"].pop("n_transforms")
    io.save(
        tmp_path / "old.pt",
        kind=meta["kind"],
        tensors=tensors,
        metadata={k: meta[k] for k in ("config", "standardizer", "history")},
    )
    loaded = FlowEnsemble.load(tmp_path / "old.pt")
    assert loaded.options == ensemble.options
    x = np.zeros((3, 3)) + _MEAN[:3]
    v = np.zeros((3, 3)) + _MEAN[3:]
    assert torch.equal(loaded.log_prob(x, v), ensemble.log_prob(x, v))
