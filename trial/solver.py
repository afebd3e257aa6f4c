"""What a solver is: its typed params and its model. The platform (trial/loop.py) owns the loop.

A solver is written exactly as a team writes its own (the built-ins in solvers/ are):

    import torch
    from trial import Solver, SolverParams

    class TinyNet(Solver):
        data_kinds = ("tabular",)            # optional; default: every kind

        class Params(SolverParams):           # the shared params plus its own
            hidden: int = 16

        def build_model(self, input_shape, num_classes) -> torch.nn.Module:
            return torch.nn.Sequential(torch.nn.Linear(input_shape[0], self.params.hidden),
                                       torch.nn.ReLU(), torch.nn.Linear(self.params.hidden, num_classes))

and named in a sweep config by its import path (`solver.name: "models:TinyNet"`, or
`"path/to/models.py:TinyNet"`). Optional hooks: `configure_optimizer`, `loss`,
`training_step`, `head_name`. Like Lightning's LightningModule, nothing here runs a
loop, touches Ray or MLflow, or holds training state.
"""
from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from torch import nn

from trial.errors import ConfigError, describe_validation_error

DATA_KINDS = ("signal", "image", "tabular")
"""What a model takes per sample: signal [leads, length], image [C, H, W], tabular [features]."""
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULERS = ("cosine", "none", "onecycle", "step")


def split_names(text: str) -> tuple[str, ...]:
    """"noise, shift" -> ("noise", "shift"): how an Optuna choice carries a list of names."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


class SolverParams(BaseModel):
    """The params every solver has; a solver's own `Params` subclasses it and adds fields.

    Strict and frozen: a YAML string never becomes a number, an unknown key is an error,
    and a trial's params cannot change once built. Fields are searchable when Optuna can
    produce their type (bool, int, float, str, None, or a list of names as "a,b" text).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    epochs: int = Field(8, ge=1)
    """Passes over the training split."""
    batch_size: int = Field(64, ge=1)
    """Samples per optimizer step (per worker when training is distributed)."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate; with `lr_scheduler: onecycle`, the peak one."""
    weight_decay: float = Field(0.0, ge=0)
    """Weight decay: decoupled for adamw, an L2 penalty in the gradient for adam and sgd."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum; ignored by adam and adamw."""
    lr_scheduler: Literal["cosine", "none", "onecycle", "step"] = "none"
    """step: multiply lr by `gamma` every `step_size` epochs; cosine: anneal to 0 over
    `epochs`; onecycle: per batch, warm up to `lr` over the first 30% of steps, then
    anneal; none: constant."""
    step_size: int | None = Field(None, ge=1)
    """Epochs between decays of `lr_scheduler: step`; None: a third of `epochs` (at least 1)."""
    gamma: float = Field(0.1, gt=0, le=1)
    """Decay factor of `lr_scheduler: step`."""
    augment: tuple[str, ...] = Field((), strict=False)
    """Training-time augmentations, in order: built-in names of the data's kind (signal:
    noise, scaling, shift; image: shift, rotate; tabular: noise) mixed freely with the
    user's own (`"module:function"`, `"file.py:function"`). A YAML list, or comma-separated
    text ("noise,shift", searchable as an Optuna choice)."""
    mixup: float = Field(0.0, ge=0)
    """Mixup's Beta(alpha, alpha) alpha; 0 turns it off. With cutmix too, each batch uses one of the two."""
    cutmix: float = Field(0.0, ge=0)
    """CutMix's Beta(alpha, alpha) alpha, image and signal data (a patch, a time segment); 0: off."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Share of each target spread over all classes."""
    class_weights: bool = False
    """Weight the loss by inverse class frequency in the training split (n / (classes * count))."""
    patience: int | None = Field(None, ge=1)
    """Early stopping: stop after this many epochs without the searched metric improving; None: never."""
    min_delta: float = Field(0.0, ge=0)
    """Early stopping: an improvement must exceed this much to count."""
    init_from: str | None = None
    """Fine-tuning: start from these weights (a local state-dict file, or a trial checkpoint's
    state.pt or folder), loaded with torch.load(weights_only=True); nothing is downloaded."""
    head: Literal["keep", "replace"] = "keep"
    """With init_from: `replace` gives the model a new classifier layer for this dataset's classes."""
    freeze: tuple[str, ...] = Field((), strict=False)
    """Modules whose parameters stay fixed while training, by name ("0", "features.conv1"):
    each name covers the module and everything inside it."""
    unfreeze_after: int | None = Field(None, ge=1)
    """Train the frozen parameters too from this epoch on (counted from 0); None: never."""

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        # Optuna and pandas may hand over numpy scalars: they are the numbers they hold.
        if isinstance(data, Mapping):
            return {key: value.item() if isinstance(value, np.generic) else value for key, value in data.items()}
        return data

    @field_validator("augment", "freeze", mode="before")
    @classmethod
    def _names_from_text(cls, value: Any) -> Any:
        return split_names(value) if isinstance(value, str) else value

    @field_validator("augment")
    @classmethod
    def _each_once(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once")
        return names

    # Field validators see the fields declared before theirs in `info.data`.
    @field_validator("head")
    @classmethod
    def _replace_needs_weights(cls, head: str, info: ValidationInfo) -> str:
        if head == "replace" and info.data.get("init_from") is None:
            raise ValueError("replace needs init_from (the weights whose head it replaces)")
        return head

    @field_validator("unfreeze_after")
    @classmethod
    def _unfreeze_needs_freeze(cls, epoch: int | None, info: ValidationInfo) -> int | None:
        if epoch is not None and not info.data.get("freeze"):
            raise ValueError("needs freeze (the parameter prefixes to unfreeze)")
        return epoch


class Solver(ABC):
    """A model family with typed params; the platform trains it.

    Set `Params` (a `SolverParams` subclass) and implement `build_model`. Override the
    other methods only where a model needs something else. The loop may wrap the model
    in DistributedDataParallel, so hooks only ever call ``model(x)``.
    """

    Params: ClassVar[type[SolverParams]] = SolverParams
    data_kinds: ClassVar[tuple[str, ...]] = DATA_KINDS
    """The data kinds `build_model` accepts; `trial check-solver` builds each."""

    def __init__(self, params: SolverParams) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(
                f"{type(self).__name__} takes {self.Params.__qualname__}, got {type(params).__name__}; "
                f"build it with {type(self).__name__}.parse_params(...)"
            )
        self.params = params

    @classmethod
    def parse_params(
        cls, raw: Mapping[str, Any] | None, *, where: str = "solver.params", name: str | None = None
    ) -> SolverParams:
        """Validate `solver.params` from config (or a trial's values) into `Params`.

        Any error is one `ConfigError` line naming `<where>.<key>`, what was received and
        what is allowed; `name` is how messages call the solver (default: module:Class).
        Ints are accepted for floats; bools are never numbers; numeric text is not a
        number (PyYAML reads ``1e-3`` as text, and accepting it would hide that).
        """
        if raw is None:  # `params:` with nothing under it in YAML
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping of param names to values, got {type(raw).__name__}")
        known = cls.param_names()
        for key in sorted(raw, key=str):
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                raise ConfigError(
                    f"{where}.{key}: unknown param for solver {name or f'{cls.__module__}:{cls.__qualname__}'!r}; "
                    f"known: {', '.join(known)}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
        try:
            return cls.Params.model_validate(dict(raw))
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error.errors()[0], where)) from None

    @classmethod
    def param_names(cls) -> list[str]:
        """The names `parse_params` accepts, sorted."""
        return sorted(cls.Params.model_fields)

    # ---- the model ------------------------------------------------------------------

    @abstractmethod
    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """A fresh model mapping a batch [N, *input_shape] to logits [N, num_classes].

        Raise `trial.DataError` if the shape cannot work with this model.
        """

    # ---- optional hooks -----------------------------------------------------------------

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over `model`'s parameters; the loop adds the LR scheduler."""
        p = self.params
        parameters = model.parameters()
        if p.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
        if p.optimizer == "adam":
            return torch.optim.Adam(parameters, lr=p.lr, weight_decay=p.weight_decay)
        return torch.optim.AdamW(parameters, lr=p.lr, weight_decay=p.weight_decay)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
        """Mean loss of a batch. `targets` are class indices [N], or soft targets [N, C] under mixup/cutmix."""
        return F.cross_entropy(
            logits, targets.to(logits.device), weight=class_weights, label_smoothing=self.params.label_smoothing
        )

    def training_step(
        self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """One batch's loss, to be minimised (the loop runs backward and the optimizer step)."""
        return self.loss(model(x).float(), targets, class_weights)

    def head_name(self, model: nn.Module) -> str:
        """The classifier layer that `head: replace` gives new weights: by default the last
        module (in definition order) that has a weight."""
        names = [name for name, module in model.named_modules() if isinstance(getattr(module, "weight", None), torch.Tensor)]
        if not names:
            raise ConfigError("solver.params.head: the model has no layer with weights to replace")
        return names[-1]
