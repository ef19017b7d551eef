"""Training the flows: seeds, checkpoints, early stopping, shards and bad input."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
import torch

from gala_deeppotential import training
from gala_deeppotential.ball_map import BallMap
from gala_deeppotential.df import MIN_STARS, FlowEnsemble
from gala_deeppotential.mocks import PlummerTruth
from gala_deeppotential.selection import SkySelection
from gala_deeppotential.training import DFOptions, TrainingOptions


def _without_wall_time(history):
    return {k: v for k, v in history.items() if k != "wall_s"}


def _small_data(n=1200):
    x, v = PlummerTruth().sample(n, seed=5)
    return np.hstack([x, v])


def _within_two(x):
    """A selection function: the sphere of radius 2 about the origin."""
    return (np.linalg.norm(x, axis=1) < 2.0).astype(float)


TRUNCATED = {"truncated": True, "selection": _within_two}


class _Draws:
    """Stands in for the ``noisy`` argument: only ``has_errors`` is read."""

    def __init__(self, has_errors):
        self.has_errors = has_errors


_SPHERE = SkySelection(distance_limit=1.5 * u.kpc)
_FADING = SkySelection(distance_limit=1.5 * u.kpc, completeness=lambda d: 1 / (1 + d))


@pytest.mark.parametrize(
    "noisy, selection, expected",
    [
        (None, None, False),
        (_Draws(True), None, False),  # errors without a selection
        # A distance limit alone: truncated for exact 6D stars, missing
        # radial velocities and deconvolved errors alike.
        (None, _SPHERE, True),
        (_Draws(False), _SPHERE, True),  # missing radial velocities only
        (_Draws(True), _SPHERE, True),
        # Any other selection: truncated.
        (None, _FADING, True),
        (_Draws(False), _FADING, True),
        (_Draws(True), _FADING, True),
        (None, _within_two, True),  # a function of unknown form
    ],
)
def test_truncation_is_automatic_for_a_shaped_selection_or_errors(
    noisy, selection, expected
):
    options = training.truncation_for(DFOptions(), noisy, selection)
    assert options.truncated is expected
    # A choice made by the caller stands.
    for given in (False, True):
        chosen = DFOptions(truncated=given)
        assert training.truncation_for(chosen, noisy, selection).truncated is given


def test_automatic_truncation_leaves_a_ball_map_untruncated():
    # Mapping positions through the ball needs the DF to stop at its edge.
    for options in (DFOptions(ball_map=True), TrainingOptions()):
        resolved = training.truncation_for(options, None, _SPHERE, ball_map=True)
        assert resolved.truncated is False
    assert (
        training.truncation_for(DFOptions(ball_map=True), None, _SPHERE).truncated
        is False
    )
    assert training.truncation_for(DFOptions(), None, _SPHERE).truncated is True


def test_automatic_truncation_is_recorded_resolved(tmp_path):
    """The checkpoint records the decided bool, so a resume with the option
    spelled out (or left automatic) matches it."""
    data = _small_data()
    ens = FlowEnsemble(n_flows=1).fit(
        data, epochs=1, batch_size=256, seed=0, checkpoint_dir=tmp_path
    )
    assert ens.history["epoch"] == [1]
    again = FlowEnsemble(n_flows=1).fit(
        data, epochs=1, batch_size=256, seed=0, truncated=False, checkpoint_dir=tmp_path
    )
    assert again.history["val_loss"] == ens.history["val_loss"]


def _local(data):
    """The same stars moved to a heliocentric-like volume off the centre."""
    return data + np.array([-8.0, 0.0, 0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "local, noisy, epochs, error_epochs",
    [
        (False, None, training.DEFAULT_EPOCHS, None),
        (False, _Draws(True), training.DEFAULT_EPOCHS, None),
        (True, None, training.LOCAL_EPOCHS, None),
        (True, _Draws(False), training.LOCAL_EPOCHS, None),  # missing RVs only
        (True, _Draws(True), training.DEFAULT_EPOCHS, None),  # deconvolved
    ],
)
def test_a_local_volume_trains_longer(local, noisy, epochs, error_epochs):
    data = _small_data()
    x = (_local(data) if local else data)[:, :3]
    options = training.epochs_for(DFOptions(), x, noisy)
    assert (options.epochs, options.error_epochs) == (epochs, error_epochs)
    # A choice made by the caller stands.
    chosen = DFOptions(epochs=5, error_epochs=None)
    assert training.epochs_for(chosen, x, noisy) is chosen
    chosen = DFOptions(error_epochs=3)
    assert training.epochs_for(chosen, x, noisy).error_epochs == 3


def test_automatic_epochs_are_recorded_resolved(tmp_path):
    """``train_flows`` decides the epochs from the stars; the checkpoint
    records the number, so a resume that spells it out matches."""
    data = _local(_small_data())
    settings = {"batch_size": 1024, "patience": 100, "seed": 0}
    ens = FlowEnsemble(n_flows=1).fit(data, checkpoint_dir=tmp_path, **settings)
    assert ens.history["epoch"] == list(range(1, training.LOCAL_EPOCHS + 1))
    again = FlowEnsemble(n_flows=1).fit(
        data, epochs=training.LOCAL_EPOCHS, checkpoint_dir=tmp_path, **settings
    )
    assert again.history["val_loss"] == ens.history["val_loss"]


def test_same_seed_is_bit_identical_and_other_seed_is_not():
    data = _small_data()
    kwargs = dict(epochs=2, batch_size=256, seed=7)
    a = FlowEnsemble(n_flows=2).fit(data, **kwargs)
    b = FlowEnsemble(n_flows=2).fit(data, **kwargs)
    c = FlowEnsemble(n_flows=2).fit(data, **{**kwargs, "seed": 8})
    for name, value in a.flow.state_dict().items():
        assert torch.equal(value, b.flow.state_dict()[name]), name
    assert a.history["val_loss"] == b.history["val_loss"]
    assert a.history["val_loss"] != c.history["val_loss"]


@pytest.mark.parametrize("extra", [{}, TRUNCATED])
def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch, extra):
    data = _small_data()
    kwargs = dict(epochs=4, batch_size=256, seed=1, **extra)
    reference = FlowEnsemble(n_flows=2).fit(data, **kwargs)

    save = training.FlowTrainer._save
    calls = []

    def interrupted_save(self):
        save(self)
        calls.append(self.epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.FlowTrainer, "_save", interrupted_save)
    with pytest.raises(KeyboardInterrupt) as info:
        FlowEnsemble(n_flows=2).fit(data, checkpoint_dir=tmp_path, **kwargs)
    assert "resume" in "".join(getattr(info.value, "__notes__", []))
    monkeypatch.setattr(training.FlowTrainer, "_save", save)

    resumed = FlowEnsemble(n_flows=2).fit(data, checkpoint_dir=tmp_path, **kwargs)
    assert calls == [1, 2]
    assert _without_wall_time(resumed.history) == _without_wall_time(reference.history)
    for name, value in reference.flow.state_dict().items():
        assert torch.equal(value, resumed.flow.state_dict()[name]), name
    # A finished checkpoint returns at once, with the same members.
    again = FlowEnsemble(n_flows=2).fit(data, checkpoint_dir=tmp_path, **kwargs)
    assert _without_wall_time(again.history) == _without_wall_time(reference.history)
    with pytest.raises(ValueError, match="different fit"):
        FlowEnsemble(n_flows=2).fit(
            data, checkpoint_dir=tmp_path, **{**kwargs, "seed": 2}
        )


def test_poisoned_weights_are_reported_as_such(monkeypatch):
    # NaN weights make the splines fail inside the next step, before the
    # epoch's loss is checked: the error still names the problem and the fix.
    def poisoning_clip(flow, norm):
        for parameter in flow.parameters():
            parameter.grad = torch.full_like(parameter, math.nan)

    monkeypatch.setattr(training, "_clip_per_member", poisoning_clip)
    with pytest.raises(FloatingPointError, match="lower lr"):
        FlowEnsemble(n_flows=2).fit(_small_data(), epochs=2, batch_size=256)


def test_early_stopping_restores_the_best_weights():
    data = _small_data(1000)
    ensemble = FlowEnsemble(n_flows=2, hidden_features=128).fit(
        data, epochs=200, batch_size=128, lr=5e-3, patience=2, seed=0
    )
    history = ensemble.history
    # Overfitting 900 stars stops well before 200 epochs.
    assert len(history["epoch"]) < 200
    n_val = round(0.1 * len(data))
    val = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))]
    val = val[:n_val]
    final = torch.stack(
        [ensemble.member(k).log_prob(val[:, :3], val[:, 3:]) for k in range(2)]
    )
    # Each member keeps the weights of its own best epoch, before its
    # patience ran out, even if it trained on for the other member.
    best = [history["val_loss"][e - 1][k] for k, e in enumerate(history["best_epoch"])]
    np.testing.assert_allclose(-final.mean(1).numpy(), best, atol=1e-4)
    for k, e in enumerate(history["best_epoch"]):
        column = [row[k] for row in history["val_loss"][: e + 2]]
        assert min(column) == column[e - 1]
    assert all(e < len(history["epoch"]) for e in history["best_epoch"])


def test_truncated_likelihood_keeps_the_final_weights():
    # Its validation loss holds a Monte Carlo ln Z, too noisy to choose
    # epochs by, so no member stops early or goes back to an earlier epoch.
    data = _small_data(1000)
    ensemble = FlowEnsemble(n_flows=2, hidden_features=128).fit(
        data, epochs=20, batch_size=128, lr=5e-3, patience=1, seed=0, **TRUNCATED
    )
    history = ensemble.history
    assert len(history["epoch"]) == 20
    assert history["best_epoch"] == [20, 20]
    # The members overfit 900 stars from epoch 14 on: with patience=1 the
    # plain rule would have stopped them there.
    assert (np.diff(history["val_loss"], axis=0) > 0).any()


@pytest.mark.parametrize("extra", [{}, {"jitter": 0.1}, TRUNCATED])
def test_shards_fitted_apart_are_the_members_of_one_fit(extra):
    data = _small_data()
    kwargs = dict(epochs=2, batch_size=128, seed=3, **extra)
    whole = FlowEnsemble(n_flows=4).fit(data, **kwargs)
    shards = [
        FlowEnsemble(n_flows=n).fit(data, first_member=first, **kwargs)
        for first, n in ((0, 1), (1, 3))
    ]
    joined = FlowEnsemble.concatenate(shards)
    # Bit for bit: a member's arithmetic does not depend on its batch.
    for name, value in whole.flow.state_dict().items():
        assert torch.equal(joined.flow.state_dict()[name], value), name
    assert _without_wall_time(joined.history) == _without_wall_time(whole.history)
    # Selecting undoes concatenating.
    again = whole.select([1, 2, 3])
    x, v = data[:50, :3], data[:50, 3:]
    assert torch.equal(again.log_prob(x, v), shards[1].log_prob(x, v))
    assert again.history["val_loss"] == shards[1].history["val_loss"]
    with pytest.raises(ValueError, match="standardizers"):
        FlowEnsemble.concatenate(
            [shards[0], FlowEnsemble(n_flows=1).fit(data, epochs=2, seed=4)]
        )
    with pytest.raises(ValueError, match="epochs"):
        FlowEnsemble.concatenate(
            [shards[0], FlowEnsemble(n_flows=1).fit(data, **{**kwargs, "epochs": 1})]
        )
    with pytest.raises(IndexError):
        whole.select([4])


def test_threads_option_is_restored():
    before = torch.get_num_threads()
    FlowEnsemble(n_flows=1).fit(_small_data(), epochs=1, threads=2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:, :5], r"\(N, 6\)"),
        (lambda d: d[: MIN_STARS - 1], "too few"),
        (lambda d: np.where(np.arange(len(d))[:, None] == 3, np.nan, d), "NaN or inf"),
        (
            lambda d: np.where(np.arange(len(d))[:, None] == 9, np.inf, d),
            "rows \\[9\\]",
        ),
        (lambda d: np.column_stack([d[:, :5], np.full(len(d), 2.0)]), "constant"),
    ],
)
def test_bad_data_is_refused_clearly(mutate, message):
    with pytest.raises(ValueError, match=message):
        FlowEnsemble(n_flows=1).fit(mutate(_small_data()), epochs=1)


def test_jitter_widens_the_fitted_density_by_its_variance():
    # Noise of standard deviation 0.5 on standardized stars: the flow learns
    # the data convolved with it, whose variance is 1 + 0.25 times the data's
    # on every axis. Measured: mean variance ratio 1.057 without jitter and
    # 1.295 with it, a difference of 0.238.
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4096, 6)) * [1, 2, 3, 10, 20, 30]
    ratios = []
    for jitter in (0.0, 0.5):
        ensemble = FlowEnsemble(n_flows=1, asinh_axes=()).fit(
            data, epochs=10, batch_size=256, seed=0, jitter=jitter
        )
        x, v = ensemble.sample(20000, seed=1)
        y = torch.cat([x, v], dim=1).double().numpy()
        ratios.append(np.mean(y.var(axis=0) / data.var(axis=0)))
    assert ratios[1] - ratios[0] == pytest.approx(0.25, abs=0.05)


def test_bad_settings_are_refused_clearly():
    for epochs in (0, 2.5):
        with pytest.raises(ValueError, match="epochs must be a positive integer"):
            TrainingOptions(epochs=epochs)
    with pytest.raises(ValueError, match="jitter must be >= 0"):
        FlowEnsemble(n_flows=1).fit(_small_data(), epochs=1, jitter=-0.1)
    with pytest.raises(ValueError, match="factorization must be one of"):
        FlowEnsemble(factorization="coupled")


def test_options_are_one_object_per_stage():
    options = DFOptions(n_flows=4, epochs=3, lr=1e-3)
    assert options.n_transforms == 4 and options.epochs == 3
    assert FlowEnsemble(options).options.n_flows == 4
    assert TrainingOptions(epochs=3).time_limit is None
    with pytest.raises(TypeError, match="DFOptions has no setting 'n_steps'"):
        training.fit_distribution_function(_small_data(), n_steps=4)
    with pytest.raises(ValueError, match="validation_fraction must lie in"):
        DFOptions(validation_fraction=1.0)


BALL = BallMap([0.0, 0.0, 0.0], 2.0)


@pytest.mark.parametrize(
    "ball_map, noisy, ball, expected",
    [
        (True, None, BALL, BALL),  # exact positions in a ball
        (True, _Draws(False), BALL, BALL),  # missing radial velocities
        (False, None, BALL, None),  # off (the default)
    ],
)
def test_ball_map_only_for_exact_positions_in_a_given_ball(
    ball_map, noisy, ball, expected
):
    ensemble = FlowEnsemble(n_flows=1, ball_map=ball_map)
    assert training._ball_for(ensemble, TrainingOptions(), noisy, ball) is expected
    assert FlowEnsemble(n_flows=1).options.ball_map is False


def test_ball_map_refuses_what_it_cannot_do():
    ensemble = FlowEnsemble(n_flows=1, ball_map=True)
    with pytest.raises(ValueError, match="ball_map=True, but no ball was given"):
        training._ball_for(ensemble, TrainingOptions(), None, None)
    with pytest.raises(ValueError, match="ball_map=True, but measurement errors"):
        training._ball_for(ensemble, TrainingOptions(), _Draws(True), BALL)
    with pytest.raises(ValueError, match="ball_map=True, but the truncated"):
        training._ball_for(ensemble, TrainingOptions(truncated=True), None, BALL)


def test_flows_through_a_ball_map_stay_inside_it(tmp_path):
    data = _small_data(2000)
    data = data[np.linalg.norm(data[:, :3], axis=1) < 2.0]
    df = FlowEnsemble(n_flows=1, ball_map=True).fit(
        data, epochs=1, batch_size=256, seed=0, ball=BALL, checkpoint_dir=tmp_path
    )
    assert df.standardizer.ball_map.radius == BALL.radius
    x, _ = df.sample(4096, seed=1)
    radius = np.linalg.norm(x, axis=1)
    assert radius.max() < 2.0 and radius.min() >= 0
    # Beyond the ball the DF is zero.
    v = np.zeros((3, 3))
    log_f = df.log_prob(np.array([[0.0, 0.0, 1.0], [0.0, 2.1, 0.0], [5.0, 0, 0]]), v)
    assert bool(torch.isfinite(log_f[0])) and bool((log_f[1:] == -math.inf).all())
    # The ball is part of what the checkpoint is a fit of.
    with pytest.raises(ValueError, match="different"):
        FlowEnsemble(n_flows=1, ball_map=True).fit(
            data,
            epochs=1,
            batch_size=256,
            seed=0,
            ball=BallMap([0.0, 0.0, 0.0], 2.5),
            checkpoint_dir=tmp_path,
        )
