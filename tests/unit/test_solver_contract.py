"""The contract every registered solver keeps; a new solver is tested by registering it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from solvers import AUGMENTATIONS, Solver, get_solver, register, registered_solvers
from solvers.augment import CUTMIX_KINDS
from trial.errors import ConfigError, DataError

# One small sample shape per data kind, big enough for every solver of that kind.
TINY_SHAPES = {"signal": (2, 64), "image": (1, 8, 8), "tabular": (5,)}
NUM_CLASSES = 3

ALL_SOLVERS = registered_solvers()



@pytest.fixture(params=ALL_SOLVERS)
def solver_cls(request: pytest.FixtureRequest) -> type[Solver]:
    return get_solver(request.param)


def _toy(cls: type[Solver], n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable toy data: each class shifts the mean of every input value."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = torch.randn(n, *TINY_SHAPES[cls.data_kind], generator=generator)
    x += 1.5 * y.float().view(-1, *[1] * len(TINY_SHAPES[cls.data_kind]))
    return x, y


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator)


class _Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: only forward() reaches the inner model."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _solver_and_model(cls: type[Solver], **params: object) -> tuple[Solver, nn.Module]:
    torch.manual_seed(0)
    solver = cls(cls.parse_params(params))
    return solver, solver.build_model(TINY_SHAPES[cls.data_kind], NUM_CLASSES)


# ---- registry ---------------------------------------------------------------------------


def test_builtin_solvers_are_registered() -> None:
    assert {"ecg_cnn1d", "image_cnn", "tabular_mlp"} <= set(ALL_SOLVERS)
    assert ALL_SOLVERS == sorted(ALL_SOLVERS)


def test_unknown_solver_lists_registered_names() -> None:
    with pytest.raises(ConfigError) as error:
        get_solver("resnet9000")
    message = str(error.value)
    assert message.startswith("solver.name: unknown solver 'resnet9000'; registered: ")
    assert message.endswith(", ".join(ALL_SOLVERS))


def test_duplicate_name_is_an_error(solver_cls: type[Solver]) -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register
        class Impostor(solver_cls):  # type: ignore[valid-type,misc]
            pass

    assert get_solver(solver_cls.name) is solver_cls


def test_register_rejects_an_untyped_param() -> None:
    with pytest.raises(TypeError, match="supported: bool, int, float, str"):

        @register
        class Broken(Solver):
            name = "broken_for_test"
            data_kind = "tabular"

            @dataclass(frozen=True)
            class Params(Solver.Params):
                sizes: list = dataclasses.field(default_factory=list)

            def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
                return nn.Linear(input_shape[0], num_classes)

    assert "broken_for_test" not in registered_solvers()


# ---- params -------------------------------------------------------------------------------


def test_defaults_and_names(solver_cls: type[Solver]) -> None:
    params = solver_cls.parse_params({})
    assert params == solver_cls.Params()
    assert solver_cls.parse_params(None) == params
    assert (params.epochs, params.batch_size) == (8, 64)
    names = solver_cls.param_names()
    assert names == sorted(names)
    assert {"epochs", "batch_size", "lr", "weight_decay"} <= set(names)
    # The shared loop's options: every solver has them.
    assert {f.name for f in dataclasses.fields(Solver.Params)} <= set(names)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.lr = 1.0  # type: ignore[misc]


def test_known_values_are_kept(solver_cls: type[Solver]) -> None:
    params = solver_cls.parse_params({"epochs": 3, "lr": 1, "weight_decay": 0.01, "batch_size": np.int64(16)})
    assert (params.epochs, params.batch_size, params.weight_decay) == (3, 16, 0.01)
    # An int is accepted for a float field and stored as a float.
    assert params.lr == 1.0 and type(params.lr) is float
    assert type(params.batch_size) is int


def test_unknown_param_lists_known_names(solver_cls: type[Solver]) -> None:
    with pytest.raises(ConfigError) as error:
        solver_cls.parse_params({"learning_rate": 0.1})
    message = str(error.value)
    assert message.startswith(
        f"solver.params.learning_rate: unknown param for solver '{solver_cls.name}'; "
        f"known: {', '.join(solver_cls.param_names())}"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lr", "1e-3", "expected a float"),  # PyYAML reads 1e-3 as a string
        ("lr", True, "expected a float"),
        ("lr", None, "expected a float"),
        ("lr", float("nan"), "expected a finite float"),
        ("epochs", 2.0, "expected an int"),
        ("epochs", "8", "expected an int"),
        ("batch_size", False, "expected an int"),
    ],
)
def test_wrong_type_names_key_value_and_type(solver_cls: type[Solver], key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        solver_cls.parse_params({key: value})
    message = str(error.value)
    assert message.startswith(f"solver.params.{key}: got {value!r}")
    assert expected in message


@pytest.mark.parametrize(
    ("key", "value"), [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1e-3), ("weight_decay", -0.1)]
)
def test_out_of_range_is_an_error(solver_cls: type[Solver], key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^solver\.params\.{key}: got {value!r}, expected"):
        solver_cls.parse_params({key: value})


def test_params_must_be_a_mapping(solver_cls: type[Solver]) -> None:
    with pytest.raises(ConfigError, match=r"^solver\.params: expected a mapping"):
        solver_cls.parse_params([("lr", 0.1)])  # type: ignore[arg-type]


# ---- model and loop ------------------------------------------------------------------------


def test_model_gives_logits_per_sample(solver_cls: type[Solver]) -> None:
    solver, model = _solver_and_model(solver_cls)
    x, _ = _toy(solver_cls, 4)
    model.eval()
    assert model(x).shape == (4, NUM_CLASSES)


def test_wrong_input_rank_is_a_data_error(solver_cls: type[Solver]) -> None:
    solver = solver_cls(solver_cls.parse_params({}))
    with pytest.raises(DataError, match=solver_cls.name):
        solver.build_model((4, 4, 4, 4), NUM_CLASSES)


def test_training_reduces_loss_on_a_learnable_toy(solver_cls: type[Solver]) -> None:
    solver, model = _solver_and_model(solver_cls, lr=1e-2)
    x, y = _toy(solver_cls, 97)  # 97 = 6 batches of 16 + a last batch of one sample
    loader = _loader(x, y, batch_size=16, shuffle=True)
    optimizer = solver.configure_optimizer(model)
    # Through a DDP-like wrapper: the loop may only call model(x).
    wrapped = _Wrapped(model)
    losses = [solver.train_epoch(wrapped, loader, optimizer, "cpu") for _ in range(5)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_every_loop_option_of_its_kind_trains(solver_cls: type[Solver]) -> None:
    """The whole hook sequence the worker calls, with every option the solver's data kind allows."""
    kind = solver_cls.data_kind
    solver, model = _solver_and_model(
        solver_cls,
        lr=1e-2,
        epochs=2,
        optimizer="sgd",
        lr_scheduler="onecycle",
        augment=list(AUGMENTATIONS[kind]),
        mixup=0.4,
        cutmix=1.0 if kind in CUTMIX_KINDS else 0.0,
        label_smoothing=0.1,
        class_weights=True,
        patience=2,
    )
    x, y = _toy(solver_cls, 40)
    loader = _loader(x, y, batch_size=16, shuffle=True)
    solver.prepare(y.numpy(), NUM_CLASSES)
    optimizer = solver.configure_optimizer(model, len(loader))
    for _ in range(2):
        assert math.isfinite(solver.train_epoch(_Wrapped(model), loader, optimizer, "cpu"))
        solver.end_epoch()
    assert set(solver.training_state()) == {"lr_scheduler"}
    assert solver.predict_proba(model, loader, "cpu").shape == (40, NUM_CLASSES)


def test_predict_proba_is_softmax_in_loader_order(solver_cls: type[Solver]) -> None:
    solver, model = _solver_and_model(solver_cls)
    x, y = _toy(solver_cls, 10)
    proba = solver.predict_proba(_Wrapped(model), _loader(x, y, batch_size=4), "cpu")
    assert proba.shape == (10, NUM_CLASSES)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert not model.training
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1).numpy()
    np.testing.assert_allclose(proba, expected, atol=1e-6)


def test_state_dict_round_trip_gives_identical_predictions(solver_cls: type[Solver]) -> None:
    solver, model = _solver_and_model(solver_cls)
    x, y = _toy(solver_cls, 32)
    loader = _loader(x, y, batch_size=8)
    # One epoch, so BatchNorm running statistics differ from a fresh model's.
    solver.train_epoch(model, loader, solver.configure_optimizer(model), "cpu")
    before = solver.predict_proba(model, loader, "cpu")

    torch.manual_seed(1)
    restored = solver.build_model(TINY_SHAPES[solver_cls.data_kind], NUM_CLASSES)
    restored.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(solver.predict_proba(restored, loader, "cpu"), before)


def test_solver_takes_its_own_params_type(solver_cls: type[Solver]) -> None:
    with pytest.raises(TypeError, match="parse_params"):
        solver_cls({"lr": 0.1})  # type: ignore[arg-type]
