"""The abstract `Solver` and the registry that names solvers in config.

A solver is one file in solvers/ holding one registered `Solver` subclass:

    @register
    class MySolver(Solver):
        name = "my_solver"
        data_kind = "signal"

        @dataclass(frozen=True)
        class Params(Solver.Params):
            channels: int = 32

        def build_model(self, input_shape, num_classes):
            ...

The training loop (epochs, reporting, checkpoints, DDP wrapping, samplers) lives in
trial/ and calls the methods below; a solver imports torch, never ray or mlflow.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trial.errors import ConfigError

DATA_KINDS = ("signal", "image", "tabular")
"""What a solver's model takes per sample: signal [leads, length], image [C, H, W], tabular [features]."""

# Param field types that YAML and Optuna can both produce; anything richer would need
# its own parser and could not be searched.
_PARAM_TYPES = (bool, int, float, str)


def out_of_range(key: str, value: Any, allowed: str) -> ConfigError:
    """The error a `Solver.check_params` override raises for a value outside its range.

    `allowed` completes "expected ...", e.g. ``out_of_range("dropout", 1.5, "a value in [0, 1)")``.
    """
    return ConfigError(f"solver.params.{key}: got {value!r}, expected {allowed}")


class Solver(ABC):
    """A model family and how to train it, with typed hyperparameters.

    Subclasses set `name` and `data_kind`, may extend `Params`, and implement
    `build_model`. The other methods have working defaults (AdamW, cross-entropy, a
    plain epoch loop); override them only where the model needs something else.
    The caller may wrap the model in DistributedDataParallel, so the loop methods
    only ever call ``model(x)``.
    """

    name: ClassVar[str]
    """Registry name, used as `solver.name` in config, e.g. "ecg_cnn1d"."""
    data_kind: ClassVar[str]
    """One of `DATA_KINDS`: the per-sample input shape the model expects."""

    @dataclass(frozen=True)
    class Params:
        """Hyperparameters; subclasses extend it with a frozen dataclass subclass.

        Every field needs a default and one of the types bool, int, float, str, so
        that `solver.params` in YAML and an Optuna search space can both set it.
        """

        epochs: int = 8
        """Passes over the training split."""
        batch_size: int = 64
        """Samples per optimizer step (per worker when training is distributed)."""
        lr: float = 1e-3
        """AdamW learning rate."""
        weight_decay: float = 0.0
        """AdamW decoupled weight decay."""

    def __init__(self, params: Params) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(
                f"{type(self).__name__} takes {self.Params.__qualname__}, got {type(params).__name__}; "
                f"build it with {type(self).__name__}.parse_params(...)"
            )
        self.params = params

    # ---- params ------------------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        """The names `parse_params` accepts, sorted."""
        return sorted(_param_types(cls.Params))

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any] | None) -> Params:
        """Validate `solver.params` from config (or a trial's sampled values) into `Params`.

        Missing keys take their defaults. Unknown keys, wrong types and values out of
        range raise `ConfigError` naming `solver.params.<key>`. Ints are accepted for
        float fields; bools are never numbers; numeric strings are not converted,
        because PyYAML reads ``1e-3`` as text and silently accepting it would hide that.
        """
        if raw is None:  # `params:` with nothing under it in YAML
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"solver.params: expected a mapping of param names to values, got {type(raw).__name__}"
            )
        types = _param_types(cls.Params)
        for key in sorted(raw, key=str):
            if key not in types:
                hint = difflib.get_close_matches(str(key), types, n=1)
                raise ConfigError(
                    f"solver.params.{key}: unknown param for solver {cls.name!r}; "
                    f"known: {', '.join(sorted(types))}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
        values = {key: _coerce(f"solver.params.{key}", value, types[key]) for key, value in raw.items()}
        params = cls.Params(**values)
        cls.check_params(params)
        return params

    @classmethod
    def check_params(cls, params: Params) -> None:
        """Hook: raise `out_of_range(...)` for a value outside its allowed range.

        Overrides call ``super().check_params(params)`` first, then check their own fields.
        """
        if params.epochs < 1:
            raise out_of_range("epochs", params.epochs, "an int >= 1")
        if params.batch_size < 1:
            raise out_of_range("batch_size", params.batch_size, "an int >= 1")
        if params.lr <= 0:
            raise out_of_range("lr", params.lr, "a float > 0")
        if params.weight_decay < 0:
            raise out_of_range("weight_decay", params.weight_decay, "a float >= 0")

    # ---- model and training ----------------------------------------------------------

    @abstractmethod
    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """Return a fresh model mapping a batch [N, *input_shape] to logits [N, num_classes].

        `input_shape` is one sample's shape, laid out as `data_kind` says. Raise
        `trial.errors.DataError` if the shape cannot work with this model.
        """

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer for `model`'s parameters; AdamW with `lr` and `weight_decay` by default."""
        return torch.optim.AdamW(model.parameters(), lr=self.params.lr, weight_decay=self.params.weight_decay)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch; cross-entropy by default."""
        return F.cross_entropy(logits, targets)

    def train_epoch(
        self,
        model: nn.Module,
        loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        device: torch.device | str,
    ) -> float:
        """One pass over `loader`, one optimizer step per batch; returns the mean loss per sample."""
        model.train()
        # Summed on the device and read once at the end: `.item()` per batch would
        # make every step wait for the GPU.
        total = torch.zeros((), device=device)
        count = 0
        for x, y in loader:
            x = _inputs(x, device)
            y = y.to(device, dtype=torch.long, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            batch_loss = self.loss(model(x), y)
            batch_loss.backward()
            optimizer.step()
            total += batch_loss.detach() * len(y)
            count += len(y)
        if count == 0:
            raise ValueError("train_epoch: the loader yielded no batches")
        return float(total) / count

    def predict_proba(
        self,
        model: nn.Module,
        loader: Iterable[tuple[torch.Tensor, torch.Tensor] | torch.Tensor],
        device: torch.device | str,
    ) -> np.ndarray:
        """Softmax probabilities [N, num_classes] in loader order, in eval mode without grad.

        Batches may be (x, y) pairs or bare inputs; labels are ignored.
        """
        model.eval()
        chunks = []
        with torch.no_grad():
            for batch in loader:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                logits = model(_inputs(x, device))
                chunks.append(torch.softmax(logits.float(), dim=1).cpu())
        if not chunks:
            raise ValueError("predict_proba: the loader yielded no batches")
        return torch.cat(chunks).numpy().astype(np.float64)


def _inputs(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    # pandas hands tabular features over as float64, and the models are float32.
    if x.dtype == torch.float64:
        x = x.float()
    return x.to(device, non_blocking=True)


def _param_types(params_cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(params_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(params_cls) if f.init}


def _coerce(key: str, value: Any, expected: type) -> Any:
    """`value` as `expected`, or a ConfigError saying what was received."""
    is_bool = isinstance(value, (bool, np.bool_))
    if expected is bool and is_bool:
        return bool(value)
    if expected is int and isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if expected is float and isinstance(value, numbers.Real) and not is_bool:
        if not math.isfinite(value):
            raise ConfigError(f"{key}: got {value!r}, expected a finite float")
        return float(value)
    if expected is str and isinstance(value, str):
        return value
    message = f"{key}: got {value!r} ({type(value).__name__}), expected {_TYPE_WORDS[expected]}"
    if isinstance(value, str) and expected in (int, float) and _is_number(value):
        # PyYAML (YAML 1.1) reads 1e-3 as a string; it needs a dot: 1.0e-3.
        message += "; write the number unquoted, and exponents with a dot (1.0e-3, not 1e-3)"
    raise ConfigError(message)


_TYPE_WORDS = {bool: "a bool", int: "an int", float: "a float (an int is accepted)", str: "a string"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_REGISTRY: dict[str, type[Solver]] = {}


def register(cls: type[Solver]) -> type[Solver]:
    """Class decorator: make `cls` available as `solver.name: <cls.name>`.

    Checks the class once here, so a broken solver fails at import rather than in
    the middle of a sweep. A name registered twice is an error.
    """
    if not (inspect.isclass(cls) and issubclass(cls, Solver)):
        raise TypeError(f"@register expects a Solver subclass, got {cls!r}")
    if inspect.isabstract(cls):
        raise TypeError(f"{cls.__name__} still has abstract methods: {', '.join(sorted(cls.__abstractmethods__))}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute `name`")
    if getattr(cls, "data_kind", None) not in DATA_KINDS:
        raise TypeError(f"{cls.__name__}.data_kind must be one of {', '.join(DATA_KINDS)}")
    params_cls = cls.Params
    if not (dataclasses.is_dataclass(params_cls) and issubclass(params_cls, Solver.Params)):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass extending Solver.Params")
    if not params_cls.__dataclass_params__.frozen:
        raise TypeError(f"{cls.__name__}.Params must be frozen: @dataclass(frozen=True)")
    for field in dataclasses.fields(params_cls):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.Params.{field.name} needs a default")
    for field_name, field_type in _param_types(params_cls).items():
        if field_type not in _PARAM_TYPES:
            raise TypeError(
                f"{cls.__name__}.Params.{field_name} has type {field_type!r}; supported: bool, int, float, str"
            )
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"solver name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[name] = cls
    return cls


def get_solver(name: str) -> type[Solver]:
    """The solver class registered as `name`; `ConfigError` listing the registered names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"solver.name: unknown solver {name!r}; registered: {', '.join(registered_solvers())}")
    return _REGISTRY[name]


def registered_solvers() -> list[str]:
    """Names of all registered solvers, sorted."""
    return sorted(_REGISTRY)
