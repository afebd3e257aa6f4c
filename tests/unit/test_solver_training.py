"""The shared training machinery (trial/loop.py) and the params every solver shares
(trial/solver.py): optimizers, LR schedulers, augmentations, mixing, label smoothing,
class weights, early stopping, checkpointable training state, AMP, freezing and
fine-tuning from saved weights."""
from __future__ import annotations

import copy
import io
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trial.loop
from trial.augment import AUGMENTATIONS, cutmix, mixup
from trial.context import save_state
from trial.errors import ConfigError
from trial.loop import (
    EarlyStopping,
    Trainer,
    _amp_dtype,
    build_model,
    inverse_frequency_weights,
    load_pretrained,
    predict_proba,
    read_weights,
    set_frozen,
)
from trial.plugins import load_solver
from trial.solver import DATA_KINDS, LR_SCHEDULERS, OPTIMIZERS, Solver, SolverParams

SHAPES = {"signal": (2, 32), "image": (1, 8, 8), "tabular": (5,)}
SOLVER_FOR = {"signal": "ecg_cnn1d", "image": "image_cnn", "tabular": "tabular_mlp"}
NUM_CLASSES = 3
TRAIN_LABELS = np.arange(30) % NUM_CLASSES
CPU = torch.device("cpu")
ALL_AUGMENTATIONS = [(kind, name) for kind, table in AUGMENTATIONS.items() for name in table]
# tabular_mlp with hidden=8, layers=2: 0 input norm, 1 linear, 4 linear, 7 linear head.
TABULAR_TOP_LEVEL = "0, 1, 4, 7"


@pytest.fixture(autouse=True, scope="module")
def _optimizers_imported() -> None:
    # torch imports its compiler stack (about a second) when it builds its first optimizer:
    # paid here once, not by whichever test happens to build the first Trainer.
    torch.optim.AdamW([nn.Parameter(torch.zeros(1))])


def _solver(kind: str = "tabular", **params: Any) -> Solver:
    cls = load_solver(SOLVER_FOR[kind])
    defaults = {"hidden": 8} if kind == "tabular" else {"channels": 4}
    return cls(cls.parse_params({**defaults, **params}))


def _trainer(
    solver: Solver,
    model: nn.Module,
    kind: str = "tabular",
    *,
    steps_per_epoch: int = 3,
    seed: int = 0,
    train_labels: np.ndarray = TRAIN_LABELS,
    device: torch.device = CPU,
) -> Trainer:
    return Trainer(
        solver,
        model,
        num_classes=NUM_CLASSES,
        data_kind=kind,
        train_labels=train_labels,
        steps_per_epoch=steps_per_epoch,
        device=device,
        seed=seed,
    )


def _setup(
    kind: str = "tabular",
    steps_per_epoch: int = 3,
    *,
    seed: int = 0,
    train_labels: np.ndarray = TRAIN_LABELS,
    **params: Any,
) -> tuple[nn.Module, Trainer]:
    """A fresh model (same weights every call) and its Trainer; the solver is `trainer.solver`."""
    torch.manual_seed(0)
    solver = _solver(kind, **params)
    model = solver.build_model(SHAPES[kind], NUM_CLASSES)
    trainer = _trainer(solver, model, kind, steps_per_epoch=steps_per_epoch, seed=seed, train_labels=train_labels)
    return model, trainer


def _batches(kind: str, n: int, batch_size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = torch.randn(n, *SHAPES[kind], generator=generator) + y.float().view(-1, *[1] * len(SHAPES[kind]))
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


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


def _config_error(function, *args: Any, **kwargs: Any) -> str:
    """The message of the ConfigError the call raises, checked to be one line."""
    with pytest.raises(ConfigError) as error:
        function(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


# ---- params --------------------------------------------------------------------------------


def test_defaults_keep_the_plain_loop() -> None:
    params = load_solver("ecg_cnn1d").parse_params({})
    assert (params.optimizer, params.lr_scheduler, params.augment) == ("adamw", "none", ())
    assert (params.mixup, params.cutmix, params.label_smoothing, params.class_weights) == (0.0, 0.0, 0.0, False)
    assert (params.patience, params.min_delta, params.momentum) == (None, 0.0, 0.9)
    assert (params.init_from, params.head, params.freeze, params.unfreeze_after) == (None, "keep", (), None)


@pytest.mark.parametrize("name", sorted(SOLVER_FOR.values()))
def test_params_survive_dict_and_model_dump_round_trips(name: str) -> None:
    # TrialJob.with_trial_params re-parses dict(params) merged with a trial's values; the
    # resolved config stores model_dump(mode="json") (lists where the params hold tuples).
    cls = load_solver(name)
    kind = cls.data_kinds[0]
    params = cls.parse_params(
        {"augment": list(AUGMENTATIONS[kind]), "patience": 3, "lr_scheduler": "step", "step_size": 2,
         "freeze": "0.", "unfreeze_after": 2, "lr": 1}
    )
    assert params.augment == tuple(AUGMENTATIONS[kind]) and params.freeze == ("0.",)
    assert params.lr == 1.0 and type(params.lr) is float  # an int is accepted for a float
    assert cls.Params.model_validate(dict(params)) == params
    assert cls.parse_params(dict(params)) == params
    assert cls.parse_params(params.model_dump()) == params
    assert cls.parse_params(params.model_dump(mode="json")) == params
    changed = cls.parse_params({**dict(params), "lr": 0.01})
    assert changed == params.model_copy(update={"lr": 0.01}) and changed != params


def test_params_are_frozen_and_typed_per_solver() -> None:
    params = load_solver("tabular_mlp").parse_params({"lr": 0.02})
    with pytest.raises(pydantic.ValidationError, match="Instance is frozen"):
        params.lr = 0.1
    assert params.lr == 0.02
    # A solver takes only its own Params, built by parse_params.
    with pytest.raises(TypeError) as error:
        load_solver("ecg_cnn1d")(params)
    assert str(error.value) == "ECGCNN1d takes ConvParams, got Params; build it with ECGCNN1d.parse_params(...)"


def test_augment_and_freeze_accept_comma_separated_text() -> None:
    cls = load_solver("ecg_cnn1d")
    assert cls.parse_params({"augment": "noise, shift"}).augment == ("noise", "shift")
    assert cls.parse_params({"augment": ""}).augment == ()
    assert cls.parse_params({"freeze": "0., 4.,"}).freeze == ("0.", "4.")


_TYPE_ERRORS = [
    ("augment", 3, "solver.params.augment: must be a valid tuple, got 3 (int)"),
    ("augment", ["noise", 1], "solver.params.augment.1: must be a valid string, got 1 (int)"),
    ("freeze", 3, "solver.params.freeze: must be a valid tuple, got 3 (int)"),
    ("patience", "3", "solver.params.patience: must be a valid integer, got '3' (str)"),
    ("patience", 2.5, "solver.params.patience: must be a valid integer, got 2.5 (float)"),
    ("epochs", True, "solver.params.epochs: must be a valid integer, got True (bool)"),
    ("class_weights", 1, "solver.params.class_weights: must be a valid boolean, got 1 (int)"),
    ("lr", "1e-3", "solver.params.lr: expected a number, got the text '1e-3' (YAML reads 1e-3 as text: write 1.0e-3)"),
    ("lr", float("nan"), "solver.params.lr: must be a finite number, got nan (float)"),
    ("head", "new", "solver.params.head: must be 'keep' or 'replace', got 'new'"),
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), _TYPE_ERRORS, ids=[f"{key}={value!r}" for key, value, _ in _TYPE_ERRORS]
)
def test_params_check_types(key: str, value: object, expected: str) -> None:
    assert _config_error(load_solver("ecg_cnn1d").parse_params, {key: value}) == expected


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("momentum", 1.0, "less than 1"),
        ("momentum", -0.1, "greater than or equal to 0"),
        ("step_size", 0, "greater than or equal to 1"),
        ("gamma", 0.0, "greater than 0"),
        ("gamma", 1.5, "less than or equal to 1"),
        ("mixup", -0.2, "greater than or equal to 0"),
        ("cutmix", -1.0, "greater than or equal to 0"),
        ("label_smoothing", 1.0, "less than 1"),
        ("label_smoothing", -0.1, "greater than or equal to 0"),
        ("patience", 0, "greater than or equal to 1"),
        ("min_delta", -0.01, "greater than or equal to 0"),
        ("unfreeze_after", 0, "greater than or equal to 1"),
    ],
)
def test_params_out_of_range(key: str, value: float, bound: str) -> None:
    message = _config_error(load_solver("ecg_cnn1d").parse_params, {key: value})
    assert message == f"solver.params.{key}: must be {bound}, got {value!r} ({type(value).__name__})"


def test_nullable_params_may_be_null() -> None:
    params = load_solver("ecg_cnn1d").parse_params({"patience": None, "step_size": None, "unfreeze_after": None})
    assert (params.patience, params.step_size, params.unfreeze_after) == (None, None, None)


def test_unknown_optimizer_lists_the_known_ones() -> None:
    message = _config_error(load_solver("ecg_cnn1d").parse_params, {"optimizer": "rmsprop"})
    assert message == "solver.params.optimizer: must be 'adam', 'adamw' or 'sgd', got 'rmsprop'"


def test_unknown_lr_scheduler_lists_the_known_ones() -> None:
    message = _config_error(load_solver("image_cnn").parse_params, {"lr_scheduler": "plateau"})
    assert message == "solver.params.lr_scheduler: must be 'cosine', 'none', 'onecycle' or 'step', got 'plateau'"


def test_an_unknown_param_lists_the_known_ones_and_a_close_match() -> None:
    cls = load_solver("tabular_mlp")
    message = _config_error(lambda raw: cls.parse_params(raw, name="tabular_mlp"), {"lrr": 0.1})
    assert message == (
        f"solver.params.lrr: unknown param for solver 'tabular_mlp'; known: {', '.join(cls.param_names())}; "
        "did you mean 'lr'?"
    )
    assert "hidden" in cls.param_names() and "channels" not in cls.param_names()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"augment": ["noise", "shift", "noise"]}, "solver.params.augment: 'noise' listed more than once"),
        ({"augment": "shift,noise,shift,noise"}, "solver.params.augment: 'noise', 'shift' listed more than once"),
        ({"head": "replace"}, "solver.params.head: replace needs init_from (the weights whose head it replaces)"),
        ({"unfreeze_after": 2}, "solver.params.unfreeze_after: needs freeze (the parameter prefixes to unfreeze)"),
    ],
    ids=["augment-twice", "two-augments-twice", "head-without-init_from", "unfreeze_after-without-freeze"],
)
def test_inconsistent_params_are_errors(raw: dict, expected: str) -> None:
    assert _config_error(load_solver("ecg_cnn1d").parse_params, raw) == expected


@pytest.mark.parametrize("kind", sorted(SOLVER_FOR))
def test_augmentation_of_another_kind_lists_the_allowed_ones(kind: str) -> None:
    foreign = next(name for other, name in ALL_AUGMENTATIONS if name not in AUGMENTATIONS[kind])
    params = {"augment": [foreign]}
    load_solver(SOLVER_FOR[kind]).parse_params(params)  # names are resolved for the data, by the Trainer
    message = _config_error(_setup, kind, **params)
    allowed = ", ".join(sorted(AUGMENTATIONS[kind]))
    assert message.startswith(
        f"solver.params.augment: unknown augmentation {foreign!r} for {kind} data; built-in for {kind}: {allowed}"
    )


def test_augmentation_error_points_to_the_right_kind() -> None:
    assert _config_error(_setup, "signal", augment=["noise", "rotate"]) == (
        "solver.params.augment: unknown augmentation 'rotate' for signal data; built-in for signal: "
        "noise, scaling, shift ('rotate' is for image data); or name your own as 'module:function'"
    )
    assert _config_error(_setup, "image", augment=["blur"]) == (
        "solver.params.augment: unknown augmentation 'blur' for image data; built-in for image: rotate, shift; "
        "or name your own as 'module:function'"
    )


def test_augmentations_resolve_in_order_by_name_or_reference() -> None:
    _, trainer = _setup("signal", augment=["shift", "trial.augment:tabular_noise", "noise"])
    signal = AUGMENTATIONS["signal"]
    assert trainer.augmentations == [signal["shift"], AUGMENTATIONS["tabular"]["noise"], signal["noise"]]
    assert _setup("signal")[1].augmentations == []


def test_cutmix_needs_a_region_to_cut() -> None:
    assert load_solver("tabular_mlp").parse_params({"cutmix": 1.0}).cutmix == 1.0  # checked with the data kind
    assert _config_error(_setup, "tabular", cutmix=1.0) == (
        "solver.params.cutmix: got 1.0, expected 0: cutmix needs signal or image data, "
        "and this is tabular data (mixup works for every kind)"
    )
    assert _setup("tabular", mixup=0.4)[1].solver.params.mixup == 0.4
    for kind in ("signal", "image"):
        assert _setup(kind, cutmix=1.0)[1].solver.params.cutmix == 1.0


# ---- optimizers and LR schedulers ---------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_builds_and_steps(name: str) -> None:
    model, trainer = _setup(optimizer=name, lr=0.05, weight_decay=0.01, momentum=0.5)
    expected = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    optimizer = trainer.optimizer
    assert type(optimizer) is expected
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.01)
    assert group["params"] == list(model.parameters())
    if name == "sgd":
        assert group["momentum"] == 0.5
    before = [p.detach().clone() for p in model.parameters()]
    loss = trainer.train_epoch(model, _batches("tabular", 24, 8))
    assert math.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_no_scheduler_keeps_the_rate() -> None:
    model, trainer = _setup(lr=0.02)
    assert trainer.scheduler is None and trainer.scheduler_per_batch is False
    for _ in range(3):
        trainer.train_epoch(model, _batches("tabular", 16, 8))
        trainer.end_epoch()
    assert _lr(trainer.optimizer) == 0.02
    assert set(trainer.state_dict()) == {"optimizer", "augment_rng"}


def _epoch_lrs(model: nn.Module, trainer: Trainer, epochs: int) -> list[float]:
    """The rate in force during each epoch."""
    lrs = []
    for _ in range(epochs):
        lrs.append(_lr(trainer.optimizer))
        trainer.train_epoch(model, _batches("tabular", 16, 8))
        trainer.end_epoch()
    return lrs


def test_step_scheduler_decays_per_epoch() -> None:
    model, trainer = _setup(lr=0.1, epochs=6, lr_scheduler="step", step_size=2, gamma=0.5)
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.StepLR) and not trainer.scheduler_per_batch
    np.testing.assert_allclose(_epoch_lrs(model, trainer, 6), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


@pytest.mark.parametrize(
    ("epochs", "step_size", "decays_after"),
    [(9, None, 3), (7, None, 2), (2, None, 1), (6, 1, 1), (6, 4, 4)],
)
def test_step_scheduler_decays_every_step_size_epochs(epochs: int, step_size: int | None, decays_after: int) -> None:
    # step_size None: a third of the epochs, rounded down, at least 1.
    model, trainer = _setup(lr=0.1, epochs=epochs, lr_scheduler="step", step_size=step_size)
    expected = [0.1 * 0.1 ** (k // decays_after) for k in range(epochs)]
    np.testing.assert_allclose(_epoch_lrs(model, trainer, epochs), expected)


def test_cosine_scheduler_anneals_per_epoch() -> None:
    model, trainer = _setup(lr=0.1, epochs=4, lr_scheduler="cosine")
    assert not trainer.scheduler_per_batch
    expected = [0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    np.testing.assert_allclose(_epoch_lrs(model, trainer, 4), expected)


def test_onecycle_steps_per_batch_up_to_lr_then_down() -> None:
    epochs, steps = 4, 5
    model, trainer = _setup(lr=0.1, epochs=epochs, lr_scheduler="onecycle", steps_per_epoch=steps)
    assert trainer.scheduler_per_batch is True
    optimizer = trainer.optimizer
    lrs: list[float] = []
    for _ in range(epochs):
        loader = _LrRecorder(_batches("tabular", 8 * steps, 8), optimizer)
        trainer.train_epoch(model, loader)
        before = _lr(optimizer)
        trainer.end_epoch()
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
    model, trainer = _setup(lr=0.1, epochs=1, lr_scheduler="onecycle", steps_per_epoch=2)
    trainer.train_epoch(model, _batches("tabular", 32, 8))  # 4 batches, not 2
    assert _lr(trainer.optimizer) < 1e-3
    assert trainer.scheduler.last_epoch == trainer.scheduler.total_steps - 1 == 1


@pytest.mark.parametrize("steps", [0, -1])
def test_onecycle_needs_steps_per_epoch(steps: int) -> None:
    with pytest.raises(ValueError) as error:
        _setup(lr_scheduler="onecycle", steps_per_epoch=steps)
    assert str(error.value) == f"lr_scheduler 'onecycle' needs steps_per_epoch >= 1, got {steps!r}"
    _setup(lr_scheduler="cosine", steps_per_epoch=steps)  # only onecycle plans per batch


def test_onecycle_with_one_batch_per_epoch() -> None:
    model, trainer = _setup(lr=0.1, epochs=5, lr_scheduler="onecycle", steps_per_epoch=1)
    lrs = []
    for _ in range(5):
        lrs.append(_lr(trainer.optimizer))
        trainer.train_epoch(model, _batches("tabular", 8, 8))
        trainer.end_epoch()
    # Five planned steps, one per epoch: up from lr / 25 towards lr, then down.
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[1] > lrs[0] and lrs[1] > lrs[2] > lrs[3] > lrs[4]


@pytest.mark.parametrize(("scheduler", "optimizer"), [("step", "sgd"), ("cosine", "adamw"), ("onecycle", "adam")])
def test_training_state_round_trip_continues_identically(scheduler: str, optimizer: str) -> None:
    # step_size 3, resumed after epoch 2: a step scheduler that restarted its count would
    # decay at the wrong epoch.
    params = {"lr": 0.05, "epochs": 6, "lr_scheduler": scheduler, "optimizer": optimizer, "step_size": 3, "gamma": 0.7}
    # dropout off: torch's global RNG is train_solver's to restore, not the Trainer's; the
    # augmentation's generator is the Trainer's.
    params.update(dropout=0.0, augment=["noise"])
    batches = _batches("tabular", 24, 8)
    model, trainer = _setup(steps_per_epoch=len(batches), **params)
    for _ in range(2):
        trainer.train_epoch(model, batches)
        trainer.end_epoch()
    checkpoint = _round_trip({"model": model.state_dict(), "training": trainer.state_dict()})
    assert set(checkpoint["training"]) == {"optimizer", "lr_scheduler", "augment_rng"}

    model2, resumed = _setup(steps_per_epoch=len(batches), **params)
    model2.load_state_dict(checkpoint["model"])
    resumed.load_state_dict(checkpoint["training"])

    for _ in range(3):
        recorders = [_LrRecorder(batches, trainer.optimizer), _LrRecorder(batches, resumed.optimizer)]
        losses = [trainer.train_epoch(model, recorders[0]), resumed.train_epoch(model2, recorders[1])]
        trainer.end_epoch()
        resumed.end_epoch()
        assert recorders[0].lrs == recorders[1].lrs
        assert losses[0] == losses[1]
    assert _lr(trainer.optimizer) == _lr(resumed.optimizer)
    assert torch.equal(trainer.rng.get_state(), resumed.rng.get_state())
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


def test_loading_scheduler_state_into_a_trainer_without_one_is_an_error() -> None:
    _, trainer = _setup(lr_scheduler="cosine")
    state = trainer.state_dict()
    _, other = _setup()
    with pytest.raises(ValueError) as error:
        other.load_state_dict(state)
    assert str(error.value) == "Trainer.load_state_dict: the state has LR scheduler state but lr_scheduler is 'none'"
    other.load_state_dict(other.state_dict())
    with pytest.raises(ValueError) as error:
        trainer.load_state_dict(other.state_dict())
    assert str(error.value) == "Trainer.load_state_dict: the state has no LR scheduler state but lr_scheduler is 'cosine'"


def test_cpu_training_has_no_amp_and_passes_over_a_grad_scaler_state() -> None:
    # A float16 CUDA run's checkpoint resumed on a CPU: there is no scaler to restore.
    assert _amp_dtype(CPU) is None
    model, trainer = _setup()
    assert (trainer.amp_dtype, trainer.scaler) == (None, None)
    scaler_state = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 7}
    trainer.load_state_dict({**trainer.state_dict(), "grad_scaler": scaler_state})
    assert "grad_scaler" not in trainer.state_dict()
    assert math.isfinite(trainer.train_epoch(model, _batches("tabular", 16, 8)))


# ---- augmentations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), ALL_AUGMENTATIONS)
def test_augmentation_changes_inputs_keeps_shape_and_follows_the_seed(kind: str, name: str) -> None:
    x = torch.randn(6, *SHAPES[kind], generator=torch.Generator().manual_seed(1)) + 2.0
    original = x.clone()
    fn = AUGMENTATIONS[kind][name]
    numpy_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state()

    rng = torch.Generator().manual_seed(5)
    first = fn(x, rng)
    advanced = rng.get_state()
    again = fn(x, torch.Generator().manual_seed(5))
    other = fn(x, torch.Generator().manual_seed(6))
    after = fn(x, rng)  # the same generator, further on: a new draw

    assert torch.equal(x, original)  # the input is not modified in place
    assert first.shape == x.shape and first.dtype == x.dtype and first.device == x.device
    assert not torch.equal(first, x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, after)
    assert not torch.equal(advanced, torch.Generator().manual_seed(5).get_state())  # it draws from rng
    assert torch.equal(torch.get_rng_state(), torch_state)  # torch's global RNG untouched
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # numpy's global RNG untouched


def test_signal_shift_rolls_each_sample_by_its_own_amount() -> None:
    x = torch.arange(40.0).view(1, 1, 40).repeat(8, 2, 1)
    shifted = AUGMENTATIONS["signal"]["shift"](x, torch.Generator().manual_seed(0))
    offsets = set()
    for sample in shifted:
        offset = int(sample[0, 0])
        assert torch.equal(sample, torch.roll(x[0], -offset if offset < 20 else 40 - offset, dims=-1))
        assert offset <= 4 or offset >= 36  # at most 10% of the length either way
        offsets.add(offset)
    assert len(offsets) > 1


def test_image_shift_moves_whole_pixels() -> None:
    x = torch.zeros(8, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    shifted = AUGMENTATIONS["image"]["shift"](x, torch.Generator().manual_seed(0))
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(8))  # one pixel, copied exactly
    positions = {tuple(torch.nonzero(image[0])[0].tolist()) for image in shifted}
    assert all(abs(r - 4) <= 1 and abs(c - 4) <= 1 for r, c in positions) and len(positions) > 1


def _model_inputs(seed: int, global_seed: int) -> list[torch.Tensor]:
    """What the model sees in one augmented epoch, with the Trainer seeded `seed`."""
    model, trainer = _setup("signal", seed=seed, augment=["noise", "scaling", "shift"], dropout=0.0)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    torch.manual_seed(global_seed)
    trainer.train_epoch(model, _batches("signal", 12, 4))
    return seen


def test_the_trainer_seeds_its_augmentations() -> None:
    first = _model_inputs(7, global_seed=0)
    again = _model_inputs(7, global_seed=123)  # torch's global seed plays no part
    other = _model_inputs(8, global_seed=0)
    raw = [x for x, _ in _batches("signal", 12, 4)]
    assert len(first) == len(again) == len(other) == 3
    assert all(a.shape == x.shape and not torch.equal(a, x) for a, x in zip(first, raw))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(not torch.equal(a, b) for a, b in zip(first, other))


def test_predict_proba_takes_bare_inputs_as_well_as_pairs() -> None:
    model, _ = _setup("signal")
    batches = _batches("signal", 12, 5)
    pairs = predict_proba(model, batches, "cpu")
    bare = predict_proba(model, [x for x, _ in batches], "cpu")
    assert pairs.shape == (12, NUM_CLASSES) and pairs.dtype == np.float64
    np.testing.assert_allclose(pairs.sum(axis=1), np.ones(12), rtol=1e-6)
    np.testing.assert_array_equal(bare, pairs)


def test_float64_inputs_and_int32_labels_are_converted() -> None:
    # pandas hands tabular features over as float64, numpy labels may be int32.
    model, trainer = _setup()
    batches = _batches("tabular", 16, 8)
    proba = predict_proba(model, batches, "cpu")
    np.testing.assert_array_equal(predict_proba(model, [(x.double(), y) for x, y in batches], "cpu"), proba)
    loss = trainer.train_epoch(model, [(x.double(), y.int()) for x, y in batches])
    assert math.isfinite(loss)


def test_a_loader_of_one_sample_trains() -> None:
    model, trainer = _setup()
    x, y = _batches("tabular", 1, 1)[0]
    assert math.isfinite(trainer.train_epoch(model, [(x, y)]))


def test_empty_loaders_are_errors() -> None:
    model, trainer = _setup()
    with pytest.raises(ValueError, match="^predict_proba: the loader yielded no batches$"):
        predict_proba(model, [], "cpu")
    with pytest.raises(ValueError, match="^train_epoch: the loader yielded no batches$"):
        trainer.train_epoch(model, [])


def test_augmentation_and_mixing_run_in_training_only() -> None:
    model, trainer = _setup("signal", augment=["noise", "scaling", "shift"], mixup=0.4, dropout=0.0)
    batches = _batches("signal", 12, 4)
    global_rng, augment_rng = torch.get_rng_state(), trainer.rng.get_state()
    proba = predict_proba(model, batches, "cpu")
    assert torch.equal(torch.get_rng_state(), global_rng) and torch.equal(trainer.rng.get_state(), augment_rng)
    model.eval()
    with torch.no_grad():
        plain = torch.cat([torch.softmax(model(x), dim=1) for x, _ in batches]).numpy().astype(np.float64)
    np.testing.assert_array_equal(proba, plain)
    # Training draws the augmentations from the Trainer's generator, mixup from torch's.
    trainer.train_epoch(model, batches)
    assert not torch.equal(trainer.rng.get_state(), augment_rng)
    assert not torch.equal(torch.get_rng_state(), global_rng)


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
    model, trainer = _setup(kind, **params)
    loss = trainer.train_epoch(model, _batches(kind, 24, 8))
    assert math.isfinite(loss) and loss > 0


@pytest.mark.parametrize(
    ("mixup_alpha", "cutmix_alpha", "expected"),
    [(0.4, 0.0, {"mixup"}), (0.0, 0.7, {"cutmix"}), (0.4, 0.7, {"mixup", "cutmix"})],
)
def test_each_batch_gets_mixup_or_cutmix_as_configured(monkeypatch, mixup_alpha, cutmix_alpha, expected) -> None:
    calls: list[tuple[str, float, int]] = []
    for name in ("mixup", "cutmix"):
        real = getattr(trial.loop, name)

        def record(x, y, num_classes, alpha, *args, _name=name, _real=real):
            calls.append((_name, alpha, num_classes))
            return _real(x, y, num_classes, alpha, *args)

        monkeypatch.setattr(trial.loop, name, record)
    model, trainer = _setup("signal", mixup=mixup_alpha, cutmix=cutmix_alpha)
    trainer.train_epoch(model, _batches("signal", 80, 4))
    assert len(calls) == 20 and {name for name, _, _ in calls} == expected
    assert all(alpha == (mixup_alpha if name == "mixup" else cutmix_alpha) for name, alpha, _ in calls)
    assert {num_classes for _, _, num_classes in calls} == {NUM_CLASSES}
    if len(expected) == 2:  # both on: each batch draws one, about half and half
        assert 4 <= sum(name == "cutmix" for name, _, _ in calls) <= 16


def test_the_trainer_checks_its_training_labels_when_built() -> None:
    # Class weights come from the labels the Trainer is given: bad labels fail before any training.
    labels = np.array([0, 1, 3])
    with pytest.raises(ValueError) as error:
        _setup(class_weights=True, train_labels=labels)
    assert str(error.value) == "class_weights: labels must be class indices in [0, 3), got 0..3"
    assert _setup(train_labels=labels)[1].class_weights is None  # without the flag they are not needed


def test_label_smoothing_matches_cross_entropy() -> None:
    logits = torch.randn(10, NUM_CLASSES, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % NUM_CLASSES
    smoothed = _solver(label_smoothing=0.2)
    torch.testing.assert_close(smoothed.loss(logits, y, None), F.cross_entropy(logits, y, label_smoothing=0.2))
    plain = F.cross_entropy(logits, y)
    assert smoothed.loss(logits, y, None) != plain and _solver().loss(logits, y, None) == plain
    # By hand: smoothing mixes in the uniform distribution's cross-entropy.
    uniform = -torch.log_softmax(logits, dim=1).mean(dim=1).mean()
    torch.testing.assert_close(smoothed.loss(logits, y, None), 0.8 * plain + 0.2 * uniform)


def test_class_weights_are_inverse_frequency() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = inverse_frequency_weights(labels, 3)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [10 / 18, 10 / 9, 10 / 3])
    np.testing.assert_allclose(weights * np.bincount(labels), [10 / 3] * 3, rtol=1e-6)  # each class weighs alike

    _, trainer = _setup(class_weights=True, train_labels=labels)
    assert torch.equal(trainer.class_weights, torch.from_numpy(weights))
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    y = torch.from_numpy(labels)
    expected = F.cross_entropy(logits, y, weight=torch.from_numpy(weights))
    torch.testing.assert_close(trainer.solver.loss(logits, y, trainer.class_weights), expected)
    assert trainer.solver.loss(logits, y, trainer.class_weights) != F.cross_entropy(logits, y)
    # Without the flag the Trainer leaves the loss unweighted.
    assert _setup(train_labels=labels)[1].class_weights is None


def test_the_loop_weights_the_loss_by_class() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    model, trainer = _setup(class_weights=True, train_labels=labels, dropout=0.0)
    reference = copy.deepcopy(model).train()
    x, y = _batches("tabular", 10, 10)[0]
    loss = trainer.train_epoch(model, [(x, y)])  # one batch: its loss is taken before the step
    with torch.no_grad():
        logits = reference(x)
    assert loss == pytest.approx(F.cross_entropy(logits, y, weight=trainer.class_weights).item(), rel=1e-6)
    assert loss != pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-3)


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
    model, trainer = _setup("signal", dropout=0.0)
    reference = copy.deepcopy(model)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.0)
    batches = _batches("signal", 20, 8)
    rng, augment_rng = torch.get_rng_state(), trainer.rng.get_state()
    mean_loss = trainer.train_epoch(model, batches)
    # Without dropout and augmentations, not one random draw.
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(trainer.rng.get_state(), augment_rng)
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
    dtype = torch.bfloat16 if bf16 else torch.float16
    assert _amp_dtype(device) == dtype
    params = {"augment": ["noise", "shift"], "mixup": 0.2, "class_weights": True}
    torch.manual_seed(0)
    solver = _solver("signal", **params)
    model = solver.build_model(SHAPES["signal"], NUM_CLASSES).to(device)
    trainer = _trainer(solver, model, "signal", device=device)
    assert trainer.amp_dtype == dtype and (trainer.scaler is None) == bf16
    assert trainer.class_weights.device.type == "cuda"
    seen: list[torch.dtype] = []
    model[-1].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    loss = trainer.train_epoch(model, _batches("signal", 24, 8))
    assert math.isfinite(loss)
    assert set(seen) == {dtype}
    state = _round_trip(trainer.state_dict())
    assert ("grad_scaler" in state) == (not bf16)
    if not bf16:
        other = _trainer(solver, solver.build_model(SHAPES["signal"], NUM_CLASSES).to(device), "signal", device=device)
        assert other.scaler.state_dict() != state["grad_scaler"]  # three steps moved it on
        other.load_state_dict(state)
        assert other.scaler.state_dict() == state["grad_scaler"]


# ---- freezing ------------------------------------------------------------------------------------------


def _trainable(model: nn.Module) -> dict[str, bool]:
    return {name: parameter.requires_grad for name, parameter in model.named_parameters()}


def test_frozen_prefixes_stay_fixed_while_the_rest_trains() -> None:
    # weight_decay: AdamW must not decay the frozen parameters either.
    model, trainer = _setup(freeze=["0.", "1.", "7.bias"], lr=0.05, weight_decay=0.1)
    params = trainer.solver.params
    assert set_frozen(model, params, 0) is True
    frozen = {name for name, trains in _trainable(model).items() if not trains}
    assert frozen == {"0.weight", "0.bias", "1.weight", "1.bias", "7.bias"}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train_epoch(model, _batches("tabular", 24, 8))
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]) == (name in frozen), name
        assert (parameter.grad is None) == (name in frozen), name
    assert set_frozen(model, params, 1) is False  # still frozen: nothing changed


def test_unfreeze_after_trains_the_frozen_parameters_from_that_epoch() -> None:
    model, trainer = _setup(freeze="1.", unfreeze_after=2, lr=0.05)
    params = trainer.solver.params
    changed, trains, moved = [], [], []
    for epoch in range(4):
        changed.append(set_frozen(model, params, epoch))
        trains.append(model[1].weight.requires_grad)
        before = model[1].weight.detach().clone()
        trainer.train_epoch(model, _batches("tabular", 16, 8))
        moved.append(not torch.equal(model[1].weight, before))
    assert changed == [True, False, True, False]
    assert trains == moved == [False, False, True, True]
    assert all(_trainable(model).values())


def test_a_freeze_prefix_matching_nothing_is_an_error() -> None:
    model, trainer = _setup(freeze=["0.", "encoder"])
    assert _config_error(set_frozen, model, trainer.solver.params, 0) == (
        f"solver.params.freeze: 'encoder' names no parameter or module; top-level modules: {TABULAR_TOP_LEVEL}"
    )


def test_no_freeze_changes_nothing() -> None:
    model, trainer = _setup()
    assert set_frozen(model, trainer.solver.params, 0) is False
    assert all(_trainable(model).values())


# ---- fine-tuning from saved weights ---------------------------------------------------------------------


def _tabular_weights(num_classes: int = NUM_CLASSES, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = _solver().build_model(SHAPES["tabular"], num_classes)
    model[0].running_mean.fill_(0.25)  # buffers load too
    return {key: value.clone() for key, value in model.state_dict().items()}


def _saved(tmp_path: Path, obj: Any, name: str = "weights.pt") -> str:
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_init_from_loads_a_saved_state_dict(tmp_path: Path) -> None:
    source = _tabular_weights()
    solver = _solver(init_from=_saved(tmp_path, source))
    torch.manual_seed(2)
    fresh = solver.build_model(SHAPES["tabular"], NUM_CLASSES)
    assert not torch.equal(fresh.state_dict()["1.weight"], source["1.weight"])
    torch.manual_seed(2)
    model = build_model(solver, SHAPES["tabular"], NUM_CLASSES)
    assert model.state_dict().keys() == source.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert _solver().params.init_from is None  # without init_from the fresh weights stay
    torch.manual_seed(2)
    assert torch.equal(build_model(_solver(), SHAPES["tabular"], NUM_CLASSES)[1].weight, fresh[1].weight)


def test_head_replace_keeps_a_fresh_classifier_for_another_class_count(tmp_path: Path) -> None:
    source = _tabular_weights(num_classes=5)
    path = _saved(tmp_path, source)
    solver = _solver(init_from=path, head="replace")
    torch.manual_seed(2)
    fresh = solver.build_model(SHAPES["tabular"], NUM_CLASSES)
    assert solver.head_name(fresh) == "7"
    torch.manual_seed(2)
    model = build_model(solver, SHAPES["tabular"], NUM_CLASSES)
    for key, value in model.state_dict().items():
        expected = fresh.state_dict()[key] if key.startswith("7.") else source[key]
        assert torch.equal(value, expected), key
    assert model(torch.zeros(2, *SHAPES["tabular"])).shape == (2, NUM_CLASSES)
    # Keeping the head, the classifier's shapes do not fit: the message says what to do.
    assert _config_error(build_model, _solver(init_from=path), SHAPES["tabular"], NUM_CLASSES) == (
        f"solver.params.init_from: {path} does not fit the model: shapes differ at 7.weight [5, 8] vs [3, 8], "
        "7.bias [5] vs [3] (a different number of classes? head: replace gives a new classifier)"
    )


def test_weights_that_do_not_fit_name_the_keys(tmp_path: Path) -> None:
    weights = _tabular_weights()
    del weights["1.bias"]
    weights["9.weight"] = torch.zeros(2, 2)
    weights["4.weight"] = torch.zeros(2, 8)
    path = _saved(tmp_path, weights)
    model = _solver().build_model(SHAPES["tabular"], NUM_CLASSES)
    before = copy.deepcopy(model.state_dict())
    assert _config_error(load_pretrained, _solver(init_from=path), model, path) == (
        f"solver.params.init_from: {path} does not fit the model: missing keys 1.bias; unexpected keys 9.weight; "
        "shapes differ at 4.weight [2, 8] vs [8, 8]"  # not the classifier: no hint about classes
    )
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())  # nothing loaded
    # With head: replace the class-count hint is not given.
    assert _config_error(load_pretrained, _solver(init_from=path, head="replace"), model, path).endswith(
        "shapes differ at 4.weight [2, 8] vs [8, 8]"
    )
    # Long lists are cut after five keys.
    path = _saved(tmp_path, {"other.weight": torch.zeros(1)}, "other.pt")
    assert _config_error(load_pretrained, _solver(init_from=path), model, path) == (
        f"solver.params.init_from: {path} does not fit the model: missing keys 0.weight, 0.bias, 0.running_mean, "
        "0.running_var, 0.num_batches_tracked and 6 more; unexpected keys other.weight"
    )


def test_init_from_a_trial_checkpoint_loads_its_best_model(tmp_path: Path) -> None:
    best, last = _tabular_weights(seed=1), _tabular_weights(seed=2)
    folder = tmp_path / "checkpoint_000003"
    folder.mkdir()
    file = save_state(
        {"model": last, "best_model": best, "training": {}, "epoch": 3, "best_score": 0.75, "early_stopping": {}},
        folder,
    )
    for source in (str(folder), str(file)):
        weights = read_weights(source)
        assert weights.keys() == best.keys()
        assert all(torch.equal(value, best[key]) for key, value in weights.items())
        model = build_model(_solver(init_from=source), SHAPES["tabular"], NUM_CLASSES)
        assert torch.equal(model[1].weight, best["1.weight"]) and not torch.equal(model[1].weight, last["1.weight"])


def test_a_file_that_is_not_weights_is_a_one_line_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not\na\ncheckpoint\n")
    assert _config_error(read_weights, str(text)) == (
        f"solver.params.init_from: {text} is not a weights file torch.load reads (Unsupported operand 110)"
    )
    # weights_only: a pickle that would run code is refused, not loaded.
    code = _saved(tmp_path, {"w": torch.zeros(1), "hook": print}, "code.pt")
    assert _config_error(read_weights, code) == (
        f"solver.params.init_from: {code} holds Python objects besides tensors, which torch.load(weights_only=True) "
        "refuses to run; save the model's state_dict() instead"
    )
    for obj in ([torch.zeros(1)], {}, {"w": torch.zeros(1), "step": 3}, {"best_model": None, "w": torch.zeros(1)}):
        path = _saved(tmp_path, obj, "wrong.pt")
        assert _config_error(read_weights, path) == (
            f"solver.params.init_from: {path} holds no state dict (a mapping of names to tensors)"
        )
    missing = tmp_path / "nowhere.pt"
    assert _config_error(build_model, _solver(init_from=str(missing)), SHAPES["tabular"], NUM_CLASSES) == (
        f"solver.params.init_from: file not found: {missing}"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _config_error(read_weights, str(empty)) == f"solver.params.init_from: file not found: {empty / 'state.pt'}"


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
    with pytest.raises(ValueError, match=rf"^EarlyStopping: {match} must be "):
        EarlyStopping(*args)


def test_names_are_sorted_complete_and_match_the_params() -> None:
    assert LR_SCHEDULERS == ("cosine", "none", "onecycle", "step")
    assert OPTIMIZERS == ("adam", "adamw", "sgd")
    fields = SolverParams.model_fields
    assert typing.get_args(fields["optimizer"].annotation) == OPTIMIZERS
    assert typing.get_args(fields["lr_scheduler"].annotation) == LR_SCHEDULERS
    assert set(AUGMENTATIONS) == set(DATA_KINDS)
