"""The shared training loop's options: optimizers, LR schedulers, augmentations, mixing,
label smoothing, class weights, early stopping, checkpointable training state, AMP."""
from __future__ import annotations

import copy
import dataclasses
import io
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solvers import AUGMENTATIONS, LR_SCHEDULERS, OPTIMIZERS, EarlyStopping, Solver, get_solver
from solvers.augment import cutmix, mixup
from solvers.base import inverse_frequency_weights
from trial.errors import ConfigError

SHAPES = {"signal": (2, 32), "image": (1, 8, 8), "tabular": (5,)}
SOLVER_FOR = {"signal": "ecg_cnn1d", "image": "image_cnn", "tabular": "tabular_mlp"}
NUM_CLASSES = 3
ALL_AUGMENTATIONS = [(kind, name) for kind, table in AUGMENTATIONS.items() for name in table]



def _solver(kind: str = "tabular", **params: Any) -> Solver:
    cls = get_solver(SOLVER_FOR[kind])
    return cls(cls.parse_params({"channels": 4, **params} if kind != "tabular" else {"hidden": 8, **params}))


def _batches(kind: str, n: int, batch_size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = torch.randn(n, *SHAPES[kind], generator=generator) + y.float().view(-1, *[1] * len(SHAPES[kind]))
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


def _setup(kind: str = "tabular", steps_per_epoch: int | None = None, **params: Any):
    torch.manual_seed(0)
    solver = _solver(kind, **params)
    model = solver.build_model(SHAPES[kind], NUM_CLASSES)
    solver.prepare(np.arange(30) % NUM_CLASSES, NUM_CLASSES)
    optimizer = solver.configure_optimizer(model, steps_per_epoch)
    return solver, model, optimizer


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


class _LrRecorder:
    """A loader that records the learning rate in force for each batch it yields."""

    def __init__(self, batches: list, optimizer: torch.optim.Optimizer) -> None:
        self.batches, self.optimizer, self.lrs = batches, optimizer, []

    def __iter__(self):
        for batch in self.batches:
            self.lrs.append(_lr(self.optimizer))
            yield batch


def _round_trip(obj: Any) -> Any:
    """Through torch.save and a weights_only load, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---- params --------------------------------------------------------------------------------


def test_defaults_keep_the_plain_loop() -> None:
    params = get_solver("ecg_cnn1d").parse_params({})
    assert (params.optimizer, params.lr_scheduler, params.augment) == ("adamw", "none", ())
    assert (params.mixup, params.cutmix, params.label_smoothing, params.class_weights) == (0.0, 0.0, 0.0, False)
    assert (params.patience, params.min_delta, params.momentum) == (None, 0.0, 0.9)


@pytest.mark.parametrize("name", sorted(SOLVER_FOR.values()))
def test_params_survive_asdict_and_back(name: str) -> None:
    # The driver stores asdict(params) in the resolved config; each worker parses it again.
    cls = get_solver(name)
    kind = cls.data_kind
    params = cls.parse_params(
        {"augment": list(AUGMENTATIONS[kind]), "patience": 3, "lr_scheduler": "step", "step_size": 2}
    )
    assert params.augment == tuple(AUGMENTATIONS[kind])
    assert cls.parse_params(dataclasses.asdict(params)) == params


def test_augment_accepts_comma_separated_text() -> None:
    cls = get_solver("ecg_cnn1d")
    assert cls.parse_params({"augment": "noise, shift"}).augment == ("noise", "shift")
    assert cls.parse_params({"augment": ""}).augment == ()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("augment", 3, "expected a list of names"),
        ("augment", ["noise", 1], "expected a list of names"),
        ("patience", "3", "expected an int or null"),
        ("patience", 2.5, "expected an int or null"),
        ("class_weights", 1, "expected a bool"),
    ],
)
def test_new_params_check_types(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"^solver\.params\.{key}: got .*{expected}"):
        get_solver("ecg_cnn1d").parse_params({key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("step_size", 0),
        ("gamma", 0.0),
        ("gamma", 1.5),
        ("mixup", -0.2),
        ("cutmix", -1.0),
        ("label_smoothing", 1.0),
        ("label_smoothing", -0.1),
        ("patience", 0),
        ("min_delta", -0.01),
    ],
)
def test_new_params_out_of_range(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^solver\.params\.{key}: got {value!r}, expected"):
        get_solver("ecg_cnn1d").parse_params({key: value})


def test_patience_may_be_null() -> None:
    assert get_solver("ecg_cnn1d").parse_params({"patience": None}).patience is None


def test_unknown_optimizer_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as error:
        get_solver("ecg_cnn1d").parse_params({"optimizer": "rmsprop"})
    assert str(error.value) == "solver.params.optimizer: unknown optimizer 'rmsprop'; known: adam, adamw, sgd"


def test_unknown_lr_scheduler_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as error:
        get_solver("image_cnn").parse_params({"lr_scheduler": "plateau"})
    assert str(error.value) == (
        "solver.params.lr_scheduler: unknown lr_scheduler 'plateau'; known: cosine, none, onecycle, step"
    )


@pytest.mark.parametrize("kind", sorted(SOLVER_FOR))
def test_augmentation_of_another_kind_lists_the_allowed_ones(kind: str) -> None:
    cls = get_solver(SOLVER_FOR[kind])
    foreign = next(name for other, name in ALL_AUGMENTATIONS if name not in AUGMENTATIONS[kind])
    with pytest.raises(ConfigError) as error:
        cls.parse_params({"augment": [foreign]})
    allowed = ", ".join(sorted(AUGMENTATIONS[kind]))
    assert str(error.value).startswith(
        f"solver.params.augment: unknown augmentation {foreign!r} for {kind} data; allowed for {kind}: {allowed}"
    )


def test_augmentation_error_points_to_the_right_kind() -> None:
    with pytest.raises(ConfigError, match=r"'rotate' is for image data"):
        get_solver("ecg_cnn1d").parse_params({"augment": ["noise", "rotate"]})
    with pytest.raises(ConfigError, match=r"'blur' for image data; allowed for image: rotate, shift$"):
        get_solver("image_cnn").parse_params({"augment": ["blur"]})


def test_an_augmentation_listed_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^solver\.params\.augment: 'noise' listed more than once"):
        get_solver("ecg_cnn1d").parse_params({"augment": ["noise", "shift", "noise"]})


def test_cutmix_needs_a_region_to_cut() -> None:
    expected = r"^solver\.params\.cutmix: got 1\.0, expected 0: cutmix needs signal or image"
    with pytest.raises(ConfigError, match=expected):
        get_solver("tabular_mlp").parse_params({"cutmix": 1.0})
    assert get_solver("tabular_mlp").parse_params({"mixup": 0.4}).mixup == 0.4


# ---- optimizers and LR schedulers ---------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_builds_and_steps(name: str) -> None:
    solver, model, optimizer = _setup(optimizer=name, lr=0.05, weight_decay=0.01, momentum=0.5)
    expected = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    assert type(optimizer) is expected
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.01)
    if name == "sgd":
        assert group["momentum"] == 0.5
    before = [p.detach().clone() for p in model.parameters()]
    loss = solver.train_epoch(model, _batches("tabular", 24, 8), optimizer, "cpu")
    assert math.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_no_scheduler_keeps_the_rate() -> None:
    solver, model, optimizer = _setup(lr=0.02)
    for _ in range(3):
        solver.train_epoch(model, _batches("tabular", 16, 8), optimizer, "cpu")
        solver.end_epoch()
    assert _lr(optimizer) == 0.02
    assert solver.training_state() == {}


def _epoch_lrs(solver: Solver, model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int) -> list[float]:
    """The rate in force during each epoch."""
    lrs = []
    for _ in range(epochs):
        lrs.append(_lr(optimizer))
        solver.train_epoch(model, _batches("tabular", 16, 8), optimizer, "cpu")
        solver.end_epoch()
    return lrs


def test_step_scheduler_decays_per_epoch() -> None:
    solver, model, optimizer = _setup(lr=0.1, epochs=6, lr_scheduler="step", step_size=2, gamma=0.5)
    np.testing.assert_allclose(_epoch_lrs(solver, model, optimizer, 6), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


@pytest.mark.parametrize(
    ("epochs", "step_size", "decays_after"),
    [(9, None, 3), (7, None, 2), (2, None, 1), (6, 1, 1), (6, 4, 4)],
)
def test_step_scheduler_decays_every_step_size_epochs(epochs: int, step_size: int | None, decays_after: int) -> None:
    # step_size None: a third of the epochs, rounded down, at least 1.
    solver, model, optimizer = _setup(lr=0.1, epochs=epochs, lr_scheduler="step", step_size=step_size)
    expected = [0.1 * 0.1 ** (k // decays_after) for k in range(epochs)]
    np.testing.assert_allclose(_epoch_lrs(solver, model, optimizer, epochs), expected)


def test_cosine_scheduler_anneals_per_epoch() -> None:
    solver, model, optimizer = _setup(lr=0.1, epochs=4, lr_scheduler="cosine")
    expected = [0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    np.testing.assert_allclose(_epoch_lrs(solver, model, optimizer, 4), expected)


def test_onecycle_steps_per_batch_up_to_lr_then_down() -> None:
    epochs, steps = 4, 5
    solver, model, optimizer = _setup(lr=0.1, epochs=epochs, lr_scheduler="onecycle", steps_per_epoch=steps)
    lrs: list[float] = []
    for _ in range(epochs):
        loader = _LrRecorder(_batches("tabular", 8 * steps, 8), optimizer)
        solver.train_epoch(model, loader, optimizer, "cpu")
        before = _lr(optimizer)
        solver.end_epoch()
        assert _lr(optimizer) == before  # per-batch: end_epoch leaves it alone
        lrs += loader.lrs
    assert len(lrs) == epochs * steps and len(set(lrs)) == len(lrs)  # a new rate every batch
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.1)
    assert 0 < peak < len(lrs) - 1
    assert all(np.diff(lrs[: peak + 1]) > 0) and all(np.diff(lrs[peak:]) < 0)
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 1e-3
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # momentum is not cycled


def test_onecycle_holds_its_last_rate_past_the_planned_steps() -> None:
    solver, model, optimizer = _setup(lr=0.1, epochs=1, lr_scheduler="onecycle", steps_per_epoch=2)
    solver.train_epoch(model, _batches("tabular", 32, 8), optimizer, "cpu")  # 4 batches, not 2
    assert _lr(optimizer) < 1e-3


@pytest.mark.parametrize("steps", [None, 0, 2.0])
def test_onecycle_needs_steps_per_epoch(steps: Any) -> None:
    torch.manual_seed(0)
    solver = _solver(lr_scheduler="onecycle")
    with pytest.raises(ValueError, match=rf"onecycle' needs steps_per_epoch >= 1, got {steps!r}$"):
        solver.configure_optimizer(solver.build_model(SHAPES["tabular"], NUM_CLASSES), steps)


def test_onecycle_with_one_batch_per_epoch() -> None:
    solver, model, optimizer = _setup(lr=0.1, epochs=5, lr_scheduler="onecycle", steps_per_epoch=1)
    lrs = []
    for _ in range(5):
        lrs.append(_lr(optimizer))
        solver.train_epoch(model, _batches("tabular", 8, 8), optimizer, "cpu")
        solver.end_epoch()
    # Five planned steps, one per epoch: up from lr / 25 towards lr, then down.
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[1] > lrs[0] and lrs[1] > lrs[2] > lrs[3] > lrs[4]


@pytest.mark.parametrize(("scheduler", "optimizer"), [("step", "sgd"), ("cosine", "adamw"), ("onecycle", "adam")])
def test_training_state_round_trip_continues_identically(scheduler: str, optimizer: str) -> None:
    params = {"lr": 0.05, "epochs": 6, "lr_scheduler": scheduler, "optimizer": optimizer, "step_size": 1, "gamma": 0.7}
    params["dropout"] = 0.0  # the RNG stream is the loop's to restore, not the solver's
    batches = _batches("tabular", 24, 8)
    solver, model, opt = _setup(steps_per_epoch=len(batches), **params)
    for _ in range(2):
        solver.train_epoch(model, batches, opt, "cpu")
        solver.end_epoch()
    checkpoint = _round_trip(
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "training": solver.training_state()}
    )
    assert "lr_scheduler" in checkpoint["training"]

    resumed, model2, opt2 = _setup(steps_per_epoch=len(batches), **params)
    model2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["optimizer"])
    resumed.load_training_state(checkpoint["training"])

    for _ in range(3):
        recorders = [_LrRecorder(batches, opt), _LrRecorder(batches, opt2)]
        losses = [
            solver.train_epoch(model, recorders[0], opt, "cpu"),
            resumed.train_epoch(model2, recorders[1], opt2, "cpu"),
        ]
        solver.end_epoch()
        resumed.end_epoch()
        assert recorders[0].lrs == recorders[1].lrs
        assert losses[0] == losses[1]
    assert _lr(opt) == _lr(opt2)


def test_loading_scheduler_state_into_a_solver_without_one_is_an_error() -> None:
    solver, model, opt = _setup(lr_scheduler="cosine")
    state = solver.training_state()
    other, _, _ = _setup()
    with pytest.raises(ValueError) as error:
        other.load_training_state(state)
    assert str(error.value) == (
        "load_training_state: the state has LR scheduler state but this solver's lr_scheduler is 'none' "
        "(call configure_optimizer first)"
    )
    other.load_training_state({})
    with pytest.raises(ValueError) as error:
        solver.load_training_state({})
    assert str(error.value) == (
        "load_training_state: the state has no LR scheduler state but this solver's lr_scheduler is 'cosine'"
    )


def test_grad_scaler_state_waits_for_the_scaler_and_is_checkpointed_meanwhile() -> None:
    # A float16 run's checkpoint resumed where no scaler exists yet (it is made on the first
    # CUDA batch): its state is kept, and a checkpoint taken before then still carries it.
    solver, _, _ = _setup()
    scaler_state = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 7}
    solver.load_training_state({"grad_scaler": scaler_state})
    assert solver.training_state() == {"grad_scaler": scaler_state}


# ---- augmentations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), ALL_AUGMENTATIONS)
def test_augmentation_changes_inputs_keeps_shape_and_follows_the_seed(kind: str, name: str) -> None:
    x = torch.randn(6, *SHAPES[kind], generator=torch.Generator().manual_seed(1)) + 2.0
    original = x.clone()
    fn = AUGMENTATIONS[kind][name]
    numpy_state = np.random.get_state()[1].copy()

    torch.manual_seed(5)
    first = fn(x)
    torch.manual_seed(5)
    again = fn(x)
    torch.manual_seed(6)
    other = fn(x)

    assert torch.equal(x, original)  # the input is not modified in place
    assert first.shape == x.shape and first.dtype == x.dtype
    assert not torch.equal(first, x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # numpy's global RNG untouched


def test_signal_shift_rolls_each_sample_by_its_own_amount() -> None:
    x = torch.arange(40.0).view(1, 1, 40).repeat(8, 2, 1)
    torch.manual_seed(0)
    shifted = AUGMENTATIONS["signal"]["shift"](x)
    offsets = set()
    for sample in shifted:
        offset = int(sample[0, 0])
        assert torch.equal(sample, torch.roll(x[0], -offset if offset < 20 else 40 - offset, dims=-1))
        offsets.add(offset)
    assert len(offsets) > 1


def test_image_shift_moves_whole_pixels() -> None:
    x = torch.zeros(8, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    torch.manual_seed(0)
    shifted = AUGMENTATIONS["image"]["shift"](x)
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(8))  # one pixel, copied exactly
    positions = {tuple(torch.nonzero(image[0])[0].tolist()) for image in shifted}
    assert all(abs(r - 4) <= 1 and abs(c - 4) <= 1 for r, c in positions) and len(positions) > 1


def test_predict_proba_takes_bare_inputs_as_well_as_pairs() -> None:
    solver, model, _ = _setup("signal")
    batches = _batches("signal", 12, 5)
    pairs = solver.predict_proba(model, batches, "cpu")
    bare = solver.predict_proba(model, [x for x, _ in batches], "cpu")
    assert pairs.shape == (12, NUM_CLASSES) and pairs.dtype == np.float64
    np.testing.assert_array_equal(bare, pairs)


def test_float64_inputs_and_int32_labels_are_converted() -> None:
    # pandas hands tabular features over as float64, numpy labels may be int32.
    solver, model, optimizer = _setup()
    batches = _batches("tabular", 16, 8)
    proba = solver.predict_proba(model, batches, "cpu")
    np.testing.assert_array_equal(solver.predict_proba(model, [(x.double(), y) for x, y in batches], "cpu"), proba)
    loss = solver.train_epoch(model, [(x.double(), y.int()) for x, y in batches], optimizer, "cpu")
    assert math.isfinite(loss)


def test_a_loader_of_one_sample_trains() -> None:
    solver, model, optimizer = _setup()
    x, y = _batches("tabular", 1, 1)[0]
    assert math.isfinite(solver.train_epoch(model, [(x, y)], optimizer, "cpu"))


def test_empty_loaders_are_errors() -> None:
    solver, model, optimizer = _setup()
    with pytest.raises(ValueError, match="^predict_proba: the loader yielded no batches$"):
        solver.predict_proba(model, [], "cpu")
    with pytest.raises(ValueError, match="^train_epoch: the loader yielded no batches$"):
        solver.train_epoch(model, [], optimizer, "cpu")


def test_augmentation_runs_in_training_only() -> None:
    torch.manual_seed(0)
    plain, augmented = _solver("signal"), _solver("signal", augment=["noise", "scaling", "shift"], mixup=0.4)
    model = plain.build_model(SHAPES["signal"], NUM_CLASSES)
    batches = _batches("signal", 12, 4)
    np.testing.assert_array_equal(
        plain.predict_proba(model, batches, "cpu"), augmented.predict_proba(model, batches, "cpu")
    )


# ---- mixup, cutmix, label smoothing, class weights ----------------------------------------------------


def _constant_samples(kind: str, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is filled with the value i and has class i, so a mix's mean shows its proportions."""
    y = torch.arange(n)
    x = y.float().view(-1, *[1] * len(SHAPES[kind])).expand(n, *SHAPES[kind]).clone()
    return x, y


@pytest.mark.parametrize(
    ("kind", "how"), [("tabular", "mixup"), ("signal", "mixup"), ("signal", "cutmix"), ("image", "cutmix")]
)
def test_mixing_gives_soft_targets_in_proportion(kind: str, how: str) -> None:
    x, y = _constant_samples(kind)
    torch.manual_seed(3)
    if how == "mixup":
        mixed, targets = mixup(x, y, 6, alpha=1.0)
    else:
        mixed, targets = cutmix(x, y, 6, alpha=1.0, data_kind=kind)
    assert mixed.shape == x.shape and targets.shape == (6, 6)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
    assert ((targets > 0).sum(dim=1) <= 2).all() and (targets.max(dim=1).values < 1).any()
    # Each mixed sample's mean is the target-weighted mean of the sources' values.
    means = mixed.flatten(1).mean(dim=1)
    torch.testing.assert_close(means, targets @ torch.arange(6.0), rtol=0, atol=1e-5)
    if how == "cutmix":  # pasted, not blended: only the two sources' values appear
        for sample, row in zip(mixed, targets):
            assert set(sample.unique().tolist()) <= set(torch.nonzero(row).flatten().float().tolist())


@pytest.mark.parametrize("kind", sorted(SOLVER_FOR))
def test_mixup_and_cutmix_train_with_a_finite_loss(kind: str) -> None:
    params: dict[str, Any] = {"mixup": 0.4, "label_smoothing": 0.1}
    if kind != "tabular":
        params["cutmix"] = 1.0
    solver, model, optimizer = _setup(kind, **params)
    loss = solver.train_epoch(model, _batches(kind, 24, 8), optimizer, "cpu")
    assert math.isfinite(loss) and loss > 0


@pytest.mark.parametrize(
    ("mixup_alpha", "cutmix_alpha", "expected"),
    [(0.4, 0.0, {"mixup"}), (0.0, 0.7, {"cutmix"}), (0.4, 0.7, {"mixup", "cutmix"})],
)
def test_each_batch_gets_mixup_or_cutmix_as_configured(monkeypatch, mixup_alpha, cutmix_alpha, expected) -> None:
    import solvers.base

    calls: list[tuple[str, float, int]] = []
    for name in ("mixup", "cutmix"):
        real = getattr(solvers.base, name)

        def record(x, y, num_classes, alpha, *args, _name=name, _real=real):
            calls.append((_name, alpha, num_classes))
            return _real(x, y, num_classes, alpha, *args)

        monkeypatch.setattr(solvers.base, name, record)
    solver, model, optimizer = _setup("signal", mixup=mixup_alpha, cutmix=cutmix_alpha)
    solver.train_epoch(model, _batches("signal", 80, 4), optimizer, "cpu")
    assert len(calls) == 20 and {name for name, _, _ in calls} == expected
    assert all(alpha == (mixup_alpha if name == "mixup" else cutmix_alpha) for name, alpha, _ in calls)
    assert {num_classes for _, _, num_classes in calls} == {NUM_CLASSES}
    if len(expected) == 2:  # both on: each batch draws one, about half and half
        assert 4 <= sum(name == "cutmix" for name, _, _ in calls) <= 16


def test_mixing_without_prepare_is_an_error() -> None:
    torch.manual_seed(0)
    solver = _solver(mixup=0.2)
    model = solver.build_model(SHAPES["tabular"], NUM_CLASSES)
    expected = r"^train_epoch: call prepare\(train_labels, num_classes\) first \(mixup, cutmix and class_weights need it\)$"
    with pytest.raises(RuntimeError, match=expected):
        solver.train_epoch(model, _batches("tabular", 8, 4), solver.configure_optimizer(model), "cpu")


def test_label_smoothing_matches_cross_entropy() -> None:
    logits = torch.randn(10, NUM_CLASSES, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % NUM_CLASSES
    smoothed = _solver(label_smoothing=0.2)
    torch.testing.assert_close(smoothed.loss(logits, y), F.cross_entropy(logits, y, label_smoothing=0.2))
    plain = F.cross_entropy(logits, y)
    assert smoothed.loss(logits, y) != plain and _solver().loss(logits, y) == plain
    # By hand: smoothing mixes in the uniform distribution's cross-entropy.
    uniform = -torch.log_softmax(logits, dim=1).mean(dim=1).mean()
    torch.testing.assert_close(smoothed.loss(logits, y), 0.8 * plain + 0.2 * uniform)


def test_class_weights_are_inverse_frequency() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = inverse_frequency_weights(labels, 3)
    np.testing.assert_allclose(weights, [10 / 18, 10 / 9, 10 / 3])
    np.testing.assert_allclose(weights * np.bincount(labels), [10 / 3] * 3)  # each class weighs alike

    solver = _solver(class_weights=True)
    solver.prepare(labels, 3)
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    y = torch.from_numpy(labels)
    expected = F.cross_entropy(logits, y, weight=torch.from_numpy(weights))
    torch.testing.assert_close(solver.loss(logits, y), expected)
    assert solver.loss(logits, y) != F.cross_entropy(logits, y)
    # Without the flag, prepare leaves the loss unweighted.
    unweighted = _solver()
    unweighted.prepare(labels, 3)
    assert unweighted.loss(logits, y) == F.cross_entropy(logits, y)


@pytest.mark.parametrize("labels", [[0, 1, 3], [-1, 0, 1]])
def test_class_weights_refuse_labels_outside_the_classes(labels: list[int]) -> None:
    low, high = min(labels), max(labels)
    with pytest.raises(ValueError, match=rf"^class_weights: labels must be class indices in \[0, 3\), got {low}\.\.{high}$"):
        inverse_frequency_weights(np.array(labels), 3)


def test_a_class_without_samples_gets_weight_zero_and_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"classes \[2\] have no training samples"):
        weights = inverse_frequency_weights(np.array([0, 0, 1]), 3)
    np.testing.assert_allclose(weights, [0.5, 1.0, 0.0])


# ---- defaults and AMP -------------------------------------------------------------------------------


def test_default_loop_is_the_plain_pytorch_loop() -> None:
    solver, model, optimizer = _setup("signal", dropout=0.0)
    reference = copy.deepcopy(model)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.0)
    batches = _batches("signal", 20, 8)
    rng = torch.get_rng_state()
    mean_loss = solver.train_epoch(model, batches, optimizer, "cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # without dropout, not one random draw
    reference.train()
    summed = 0.0
    for x, y in batches:
        reference_optimizer.zero_grad()
        loss = F.cross_entropy(reference(x), y)
        loss.backward()
        reference_optimizer.step()
        summed += loss.item() * len(y)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    # Batches of 8, 8 and 4: the mean is per sample, not per batch.
    assert [len(y) for _, y in batches] == [8, 8, 4]
    assert mean_loss == pytest.approx(summed / 20, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bf16", [True, False])
def test_amp_on_cuda(bf16: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    device = torch.device("cuda")
    solver, model, optimizer = _setup("signal", augment=["noise", "shift"], mixup=0.2, class_weights=True)
    model.to(device)
    optimizer = solver.configure_optimizer(model)
    seen: list[torch.dtype] = []
    model[-1].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    loss = solver.train_epoch(model, _batches("signal", 24, 8), optimizer, device)
    assert math.isfinite(loss)
    assert set(seen) == {torch.bfloat16 if bf16 else torch.float16}
    state = _round_trip(solver.training_state())
    assert ("grad_scaler" in state) == (not bf16)
    if not bf16:
        other, _, _ = _setup("signal")
        other.load_training_state(state)
        assert other.training_state()["grad_scaler"]["scale"] == state["grad_scaler"]["scale"]


# ---- early stopping ------------------------------------------------------------------------------------


def _stop_epochs(stopper: EarlyStopping, scores: list[float]) -> list[bool]:
    return [stopper.update(score) for score in scores]


def test_early_stopping_max_counts_only_improvements_beyond_min_delta() -> None:
    # Binary fractions, so "exactly min_delta" is exact.
    stopper = EarlyStopping(patience=2, min_delta=0.125, mode="max")
    # 0.625 gains exactly min_delta (no), 0.75 more (yes), 0.8125 less and 0.875 exactly (no, no).
    assert _stop_epochs(stopper, [0.5, 0.625, 0.75, 0.8125, 0.875]) == [False, False, False, False, True]
    assert stopper.best == 0.75

    stopper = EarlyStopping(patience=3, mode="max")
    assert _stop_epochs(stopper, [0.5, 0.6, 0.6, 0.59, float("nan")]) == [False, False, False, False, True]


def test_early_stopping_min() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.01, mode="min")
    assert _stop_epochs(stopper, [1.0, 0.9, 0.895, 0.8, 0.85, 0.81]) == [False, False, False, False, False, True]
    assert stopper.best == 0.8


def test_early_stopping_defaults_to_max_without_min_delta() -> None:
    stopper = EarlyStopping(patience=1)
    assert (stopper.mode, stopper.min_delta) == ("max", 0.0)
    assert _stop_epochs(stopper, [0.5, 0.50001, 0.4]) == [False, False, True]


def test_early_stopping_with_patience_one_stops_at_the_first_non_improvement() -> None:
    stopper = EarlyStopping(patience=1, mode="min")
    assert _stop_epochs(stopper, [3.0, 2.0, 2.0]) == [False, False, True]


@pytest.mark.parametrize(
    ("mode", "scores"),
    [("min", [float("nan"), 1.0, 0.9, 0.95, 0.97]), ("max", [float("nan"), 0.1, 0.2, 0.15, 0.12])],
)
def test_early_stopping_after_a_nan_first_epoch_takes_the_next_score_as_best(mode: str, scores: list) -> None:
    stopper = EarlyStopping(patience=2, mode=mode)
    assert stopper.update(scores[0]) is False
    assert (stopper.best, stopper.bad_epochs) == (None, 1)
    # The first real score is an improvement on nothing, the second one on it.
    assert _stop_epochs(stopper, scores[1:]) == [False, False, False, True]
    assert stopper.best == scores[2]


def test_early_stopping_state_before_any_real_score_round_trips() -> None:
    first = EarlyStopping(patience=3, mode="max")
    first.update(float("nan"))
    second = EarlyStopping(patience=3, mode="max")
    second.load_state_dict(_round_trip(first.state_dict()))
    assert (second.best, second.bad_epochs) == (None, 1)
    assert _stop_epochs(second, [0.5, 0.4, 0.4, 0.4]) == [False, False, False, True]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_early_stopping_survives_a_state_dict_round_trip(mode: str) -> None:
    scores = [0.5, 0.4, 0.6, 0.6, 0.3, 0.7, 0.7, 0.7, 0.2, 0.2]
    whole = _stop_epochs(EarlyStopping(3, 0.05, mode), scores)
    first = EarlyStopping(3, 0.05, mode)
    head = _stop_epochs(first, scores[:5])
    second = EarlyStopping(3, 0.05, mode)
    second.load_state_dict(_round_trip(first.state_dict()))
    assert head + _stop_epochs(second, scores[5:]) == whole
    assert any(whole)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 0.0, "max"), "patience"),
        ((True, 0.0, "max"), "patience"),
        ((2.0, 0.0, "max"), "patience"),
        ((2, -0.1, "max"), "min_delta"),
        ((2, float("inf"), "max"), "min_delta"),
        ((2, "0.1", "max"), "min_delta"),
        ((2, 0.0, "up"), "mode"),
    ],
)
def test_early_stopping_checks_its_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStopping(*args)


def test_lr_scheduler_names_are_sorted_and_complete() -> None:
    assert LR_SCHEDULERS == ("cosine", "none", "onecycle", "step")
    assert OPTIMIZERS == ("adam", "adamw", "sgd")
