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
trial/ and calls the methods below; a solver imports torch, never ray or mlflow. The
epoch loop itself is shared: optimizer, LR scheduler, augmentations, mixup/cutmix,
label smoothing, class weights and AMP are all chosen by name in `Solver.Params`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import math
import numbers
import types
import typing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from solvers.augment import AUGMENTATIONS, CUTMIX_KINDS, augment, cutmix, mixup
from trial.errors import ConfigError

DATA_KINDS = ("signal", "image", "tabular")
"""What a solver's model takes per sample: signal [leads, length], image [C, H, W], tabular [features]."""

# Param field types that YAML and Optuna can both produce; anything richer would need
# its own parser and could not be searched. Each may also be optional (``int | None``),
# and a list of names is a ``tuple[str, ...]`` (from a YAML list, or "a,b" text).
_PARAM_TYPES = (bool, int, float, str)
_NAMES = tuple[str, ...]

OPTIMIZERS = ("adam", "adamw", "sgd")
"""Names `solver.params.optimizer` accepts."""
LR_SCHEDULERS = ("cosine", "none", "onecycle", "step")
"""Names `solver.params.lr_scheduler` accepts."""


def out_of_range(key: str, value: Any, allowed: str) -> ConfigError:
    """The error a `Solver.check_params` override raises for a value outside its range.

    `allowed` completes "expected ...", e.g. ``out_of_range("dropout", 1.5, "a value in [0, 1)")``.
    """
    return ConfigError(f"solver.params.{key}: got {value!r}, expected {allowed}")


class Solver(ABC):
    """A model family and how to train it, with typed hyperparameters.

    Subclasses set `name` and `data_kind`, may extend `Params`, and implement
    `build_model`. Everything else is one shared loop configured by `Params`
    (optimizer, LR scheduler, augmentations, mixup/cutmix, label smoothing, class
    weights; AMP on CUDA); override a method only where a model needs something else.
    The caller may wrap the model in DistributedDataParallel, so the loop methods
    only ever call ``model(x)``.

    The training loop (trial/worker.py) calls, on every worker::

        solver.prepare(train_labels, num_classes)          # class weights, number of classes
        model = solver.build_model(input_shape, num_classes).to(device)
        optimizer = solver.configure_optimizer(model, steps_per_epoch)   # also the LR scheduler
        # on resume: optimizer.load_state_dict(...); solver.load_training_state(...)
        stopper = EarlyStopping(p.patience, p.min_delta, mode) if p.patience else None
        for epoch in ...:
            train_loss = solver.train_epoch(model, loader, optimizer, device)
            solver.end_epoch()                               # per-epoch LR step
            proba = solver.predict_proba(model, loader, device)
            checkpoint: model, optimizer, solver.training_state(), stopper.state_dict()
            if stopper and stopper.update(score): break

    A solver instance therefore holds per-run training state (the LR scheduler, the
    AMP grad scaler, class weights): use one instance per model being trained.
    """

    name: ClassVar[str]
    """Registry name, used as `solver.name` in config, e.g. "ecg_cnn1d"."""
    data_kind: ClassVar[str]
    """One of `DATA_KINDS`: the per-sample input shape the model expects."""

    @dataclass(frozen=True)
    class Params:
        """Hyperparameters; subclasses extend it with a frozen dataclass subclass.

        Every field needs a default and one of the types bool, int, float, str (or one
        of those ``| None``), or ``tuple[str, ...]`` for a list of names, so that
        `solver.params` in YAML and an Optuna search space can both set it.
        """

        epochs: int = 8
        """Passes over the training split."""
        batch_size: int = 64
        """Samples per optimizer step (per worker when training is distributed)."""
        lr: float = 1e-3
        """Learning rate; with `lr_scheduler: onecycle`, the peak one."""
        weight_decay: float = 0.0
        """Weight decay: decoupled for adamw, an L2 penalty in the gradient for adam and sgd."""
        optimizer: str = "adamw"
        """One of `OPTIMIZERS`: adam, adamw, sgd."""
        momentum: float = 0.9
        """SGD momentum, in [0, 1); ignored by adam and adamw."""
        lr_scheduler: str = "none"
        """One of `LR_SCHEDULERS`. step: multiply lr by `gamma` every `step_size` epochs;
        cosine: anneal to 0 over `epochs`; onecycle: per batch, warm up to `lr` over the
        first 30% of steps, then anneal (momentum is left as set); none: constant."""
        step_size: int | None = None
        """Epochs between decays of `lr_scheduler: step`; None: a third of `epochs` (at least 1)."""
        gamma: float = 0.1
        """Decay factor of `lr_scheduler: step`, in (0, 1]."""
        augment: tuple[str, ...] = ()
        """Training-time augmentations, applied in order; the names depend on the data kind
        (signal: noise, scaling, shift; image: shift, rotate; tabular: noise). A YAML list,
        or comma-separated text ("noise,shift", searchable as an Optuna choice)."""
        mixup: float = 0.0
        """Mixup's Beta(alpha, alpha) alpha; 0 turns it off. With cutmix too, each batch uses one of the two."""
        cutmix: float = 0.0
        """CutMix's Beta(alpha, alpha) alpha, image and signal data (a patch, a time segment); 0: off."""
        label_smoothing: float = 0.0
        """Share of each target spread over all classes, in [0, 1)."""
        class_weights: bool = False
        """Weight the loss by inverse class frequency in the training split (n / (classes * count))."""
        patience: int | None = None
        """Early stopping: stop after this many epochs without the searched metric improving; None: never."""
        min_delta: float = 0.0
        """Early stopping: an improvement must exceed this much to count."""

    def __init__(self, params: Params) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(
                f"{type(self).__name__} takes {self.Params.__qualname__}, got {type(params).__name__}; "
                f"build it with {type(self).__name__}.parse_params(...)"
            )
        self.params = params
        # Per-run training state, set by the hooks below.
        self._num_classes: int | None = None
        self._class_weights: torch.Tensor | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._scheduler_per_batch = False
        self._scaler: torch.amp.GradScaler | None = None
        self._scaler_state: dict[str, Any] | None = None  # loaded before the scaler exists

    # ---- params ------------------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        """The names `parse_params` accepts, sorted."""
        return sorted(_param_types(cls.Params))

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any] | None) -> Params:
        """Validate `solver.params` from config (or a trial's sampled values) into `Params`.

        Missing keys take their defaults. Unknown keys, wrong types, values out of
        range and unknown names (optimizer, scheduler, augmentation) raise `ConfigError`
        naming `solver.params.<key>`. Ints are accepted for float fields; bools are
        never numbers; numeric strings are not converted, because PyYAML reads ``1e-3``
        as text and silently accepting it would hide that.
        """
        if raw is None:  # `params:` with nothing under it in YAML
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"solver.params: expected a mapping of param names to values, got {type(raw).__name__}"
            )
        types_ = _param_types(cls.Params)
        for key in sorted(raw, key=str):
            if key not in types_:
                hint = difflib.get_close_matches(str(key), types_, n=1)
                raise ConfigError(
                    f"solver.params.{key}: unknown param for solver {cls.name!r}; "
                    f"known: {', '.join(sorted(types_))}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
        values = {key: _coerce(f"solver.params.{key}", value, types_[key]) for key, value in raw.items()}
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
        if params.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"solver.params.optimizer: unknown optimizer {params.optimizer!r}; known: {', '.join(OPTIMIZERS)}"
            )
        if not 0 <= params.momentum < 1:
            raise out_of_range("momentum", params.momentum, "a value in [0, 1)")
        if params.lr_scheduler not in LR_SCHEDULERS:
            raise ConfigError(
                f"solver.params.lr_scheduler: unknown lr_scheduler {params.lr_scheduler!r}; "
                f"known: {', '.join(LR_SCHEDULERS)}"
            )
        if params.step_size is not None and params.step_size < 1:
            raise out_of_range("step_size", params.step_size, "an int >= 1, or null for a third of epochs")
        if not 0 < params.gamma <= 1:
            raise out_of_range("gamma", params.gamma, "a value in (0, 1]")
        _check_augment(params.augment, getattr(cls, "data_kind", None))
        for key in ("mixup", "cutmix"):
            if getattr(params, key) < 0:
                raise out_of_range(key, getattr(params, key), "a Beta alpha > 0, or 0 for off")
        if params.cutmix > 0 and getattr(cls, "data_kind", None) not in CUTMIX_KINDS:
            raise out_of_range(
                "cutmix",
                params.cutmix,
                f"0: cutmix needs {' or '.join(CUTMIX_KINDS)} data (mixup works for every kind)",
            )
        if not 0 <= params.label_smoothing < 1:
            raise out_of_range("label_smoothing", params.label_smoothing, "a value in [0, 1)")
        if params.patience is not None and params.patience < 1:
            raise out_of_range("patience", params.patience, "an int >= 1, or null for no early stopping")
        if params.min_delta < 0:
            raise out_of_range("min_delta", params.min_delta, "a float >= 0")

    # ---- model and training ----------------------------------------------------------

    @abstractmethod
    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """Return a fresh model mapping a batch [N, *input_shape] to logits [N, num_classes].

        `input_shape` is one sample's shape, laid out as `data_kind` says. Raise
        `trial.errors.DataError` if the shape cannot work with this model.
        """

    def prepare(self, train_labels: np.ndarray, num_classes: int) -> None:
        """Before training: learn what the loss needs from the training labels (class indices).

        Needed by `class_weights`, `mixup` and `cutmix`; harmless otherwise. Distributed
        workers pass the whole training split's labels, so all ranks weight alike.
        """
        self._num_classes = int(num_classes)
        self._class_weights = None
        if self.params.class_weights:
            self._class_weights = torch.from_numpy(inverse_frequency_weights(train_labels, num_classes))

    def configure_optimizer(self, model: nn.Module, steps_per_epoch: int | None = None) -> torch.optim.Optimizer:
        """The optimizer for `model`'s parameters, named by `optimizer`; also builds the LR scheduler.

        `steps_per_epoch` (batches per epoch on this worker) is required by
        `lr_scheduler: onecycle`, which steps per batch; the others step per epoch.
        """
        p = self.params
        parameters = model.parameters()
        if p.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                parameters, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay
            )
        elif p.optimizer == "adam":
            optimizer = torch.optim.Adam(parameters, lr=p.lr, weight_decay=p.weight_decay)
        else:
            optimizer = torch.optim.AdamW(parameters, lr=p.lr, weight_decay=p.weight_decay)

        schedulers = torch.optim.lr_scheduler
        self._scheduler, self._scheduler_per_batch = None, False
        if p.lr_scheduler == "step":
            step_size = p.step_size if p.step_size is not None else max(1, p.epochs // 3)
            self._scheduler = schedulers.StepLR(optimizer, step_size=step_size, gamma=p.gamma)
        elif p.lr_scheduler == "cosine":
            self._scheduler = schedulers.CosineAnnealingLR(optimizer, T_max=p.epochs)
        elif p.lr_scheduler == "onecycle":
            if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
                raise ValueError(
                    f"configure_optimizer: lr_scheduler 'onecycle' needs steps_per_epoch >= 1, got {steps_per_epoch!r}"
                )
            # cycle_momentum=False: `momentum` (and Adam's betas) stay what the config says.
            self._scheduler = schedulers.OneCycleLR(
                optimizer, max_lr=p.lr, total_steps=p.epochs * steps_per_epoch, cycle_momentum=False
            )
            self._scheduler_per_batch = True
        return optimizer

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch: cross-entropy with `label_smoothing` and class weights.

        `targets` are class indices [N], or class probabilities [N, C] after mixup/cutmix.
        """
        weight = self._class_weights
        if weight is not None and weight.device != logits.device:
            weight = self._class_weights = weight.to(logits.device)
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=self.params.label_smoothing)

    def train_epoch(
        self,
        model: nn.Module,
        loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        device: torch.device | str,
    ) -> float:
        """One pass over `loader`, one optimizer step per batch; returns the mean loss per sample.

        Per batch: augment, mix, forward (under autocast on CUDA), loss, step, and a
        per-batch LR scheduler step. On CPU with default params it is a plain loop.
        """
        device = torch.device(device)
        p = self.params
        mixing = p.mixup > 0 or p.cutmix > 0
        if (mixing or p.class_weights) and self._num_classes is None:
            raise RuntimeError(
                "train_epoch: call prepare(train_labels, num_classes) first (mixup, cutmix and class_weights need it)"
            )
        amp_dtype = self._amp_dtype(device)
        scaler = self._scaler
        model.train()
        # Summed on the device and read once at the end: `.item()` per batch would
        # make every step wait for the GPU.
        total = torch.zeros((), device=device)
        count = 0
        for x, y in loader:
            x = _inputs(x, device)
            y = y.to(device, dtype=torch.long, non_blocking=True)
            targets: torch.Tensor = y
            if p.augment:
                x = augment(x, self.data_kind, p.augment)
            if mixing:
                x, targets = self._mix(x, y)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                logits = model(x)
            batch_loss = self.loss(logits.float(), targets)
            if scaler is not None:
                scaler.scale(batch_loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                batch_loss.backward()
                optimizer.step()
            if self._scheduler_per_batch:
                self._step_per_batch_scheduler()
            total += batch_loss.detach() * len(y)
            count += len(y)
        if count == 0:
            raise ValueError("train_epoch: the loader yielded no batches")
        return float(total) / count

    def end_epoch(self) -> None:
        """After each epoch's training: step a per-epoch LR scheduler (step, cosine)."""
        if self._scheduler is not None and not self._scheduler_per_batch:
            self._scheduler.step()

    def training_state(self) -> dict[str, Any]:
        """What a checkpoint needs besides model and optimizer: LR scheduler and AMP scaler state.

        Plain tensors, numbers, strings, lists and dicts, loadable with
        ``torch.load(weights_only=True)``. Take it after `end_epoch`.
        """
        state: dict[str, Any] = {}
        if self._scheduler is not None:
            state["lr_scheduler"] = self._scheduler.state_dict()
        scaler_state = self._scaler.state_dict() if self._scaler is not None else self._scaler_state
        if scaler_state:
            state["grad_scaler"] = scaler_state
        return state

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore `training_state()`; call after `configure_optimizer` and the optimizer's own load."""
        scheduler_state = state.get("lr_scheduler")
        if (scheduler_state is None) != (self._scheduler is None):
            raise ValueError(
                "load_training_state: the state "
                + ("has" if scheduler_state is not None else "has no")
                + f" LR scheduler state but this solver's lr_scheduler is {self.params.lr_scheduler!r}"
                + (" (call configure_optimizer first)" if self._scheduler is None else "")
            )
        if scheduler_state is not None:
            self._scheduler.load_state_dict(scheduler_state)
        scaler_state = state.get("grad_scaler")
        if scaler_state:
            if self._scaler is not None:
                self._scaler.load_state_dict(scaler_state)
            else:
                self._scaler_state = dict(scaler_state)

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

    # ---- internals ---------------------------------------------------------------------

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        num_classes = int(self._num_classes or 0)  # set by prepare(), checked in train_epoch
        # With both on, each batch gets one of them, as timm does.
        if p.cutmix > 0 and (p.mixup == 0 or bool(torch.rand(()) < 0.5)):
            return cutmix(x, y, num_classes, p.cutmix, self.data_kind)
        return mixup(x, y, num_classes, p.mixup)

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """Autocast dtype on CUDA (bfloat16 where supported, else float16 with a grad scaler); None on CPU."""
        if device.type != "cuda":
            return None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if self._scaler is None:
            self._scaler = torch.amp.GradScaler("cuda")
            if self._scaler_state:
                self._scaler.load_state_dict(self._scaler_state)
                self._scaler_state = None
        return torch.float16

    def _step_per_batch_scheduler(self) -> None:
        scheduler = self._scheduler
        # OneCycleLR's rates are defined for steps 0..total_steps-1 and it raises past the
        # end; if the loader yields more batches than steps_per_epoch promised, hold the
        # final (lowest) rate rather than fail the trial.
        if scheduler is not None and scheduler.last_epoch + 1 < getattr(scheduler, "total_steps", math.inf):
            scheduler.step()


class EarlyStopping:
    """Stop when a score has not improved by more than `min_delta` for `patience` epochs running.

    Pure bookkeeping for the training loop: feed it each epoch's score; `update`
    returns True when training should stop. The best score only moves on an
    improvement larger than `min_delta`, so slow creeping gains do not reset the
    count forever. A NaN score never improves.

        stopper = EarlyStopping(patience=3, min_delta=0.0, mode="max")
        for epoch in ...:
            if stopper.update(score):
                break
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "max") -> None:
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an int >= 1, got {patience!r}")
        if not (isinstance(min_delta, numbers.Real) and math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"EarlyStopping: min_delta must be a finite float >= 0, got {min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best: float | None = None
        """The best score so far (None before the first real one)."""
        self.bad_epochs = 0
        """Consecutive epochs without an improvement larger than `min_delta`."""

    def update(self, score: float) -> bool:
        """Record one epoch's score; True means stop now."""
        score = float(score)
        if math.isnan(score):
            improved = False
        elif self.best is None:
            improved = True
        elif self.mode == "max":
            improved = score > self.best + self.min_delta
        else:
            improved = score < self.best - self.min_delta
        if improved:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Best score and count of bad epochs: numbers only, checkpoint-safe."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        best = state["best"]
        self.best = None if best is None else float(best)
        self.bad_epochs = int(state["bad_epochs"])


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class loss weights ``n / (num_classes * count)`` (float32); 0 for a class with no samples.

    A class missing from the training split never is a hard target, so its weight
    only matters for smoothed or mixed targets; 0 keeps it out of the loss, with a warning.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"class_weights: labels must be class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.float64)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        warnings.warn(
            f"class_weights: classes {missing.tolist()} have no training samples; their loss weight is 0",
            stacklevel=3,
        )
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1.0)), 0.0)
    return weights.astype(np.float32)


def _check_augment(names: tuple[str, ...], data_kind: str | None) -> None:
    allowed = AUGMENTATIONS.get(data_kind or "", {})
    for name in names:
        if name not in allowed:
            elsewhere = [kind for kind, table in AUGMENTATIONS.items() if name in table]
            raise ConfigError(
                f"solver.params.augment: unknown augmentation {name!r} for {data_kind} data; "
                f"allowed for {data_kind}: {', '.join(sorted(allowed)) or 'none'}"
                + (f" ({name!r} is for {' and '.join(elsewhere)} data)" if elsewhere else "")
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"solver.params.augment: {', '.join(map(repr, repeated))} listed more than once")


def _inputs(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    # pandas hands tabular features over as float64, and the models are float32.
    if x.dtype == torch.float64:
        x = x.float()
    return x.to(device, non_blocking=True)


def _param_types(params_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(params_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(params_cls) if f.init}


def _coerce(key: str, value: Any, expected: Any) -> Any:
    """`value` as `expected`, or a ConfigError saying what was received."""
    optional = _optional_of(expected)
    if optional is not None and value is None:
        return None
    kind = optional or expected
    is_bool = isinstance(value, (bool, np.bool_))
    if kind is bool and is_bool:
        return bool(value)
    if kind is int and isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if kind is float and isinstance(value, numbers.Real) and not is_bool:
        if not math.isfinite(value):
            raise ConfigError(f"{key}: got {value!r}, expected a finite float")
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind == _NAMES:
        if isinstance(value, str):  # "noise, shift": how an Optuna choice can carry a list
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return tuple(value)
    words = _TYPE_WORDS[kind] + (" or null" if optional is not None else "")
    message = f"{key}: got {value!r} ({type(value).__name__}), expected {words}"
    if isinstance(value, str) and kind in (int, float) and _is_number(value):
        # PyYAML (YAML 1.1) reads 1e-3 as a string; it needs a dot: 1.0e-3.
        message += "; write the number unquoted, and exponents with a dot (1.0e-3, not 1e-3)"
    raise ConfigError(message)


def _optional_of(annotation: Any) -> Any:
    """T for ``T | None`` (or ``Optional[T]``), else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [arg for arg in args if arg is not type(None)]
        if len(args) == 2 and len(rest) == 1:
            return rest[0]
    return None


def _supported_param_type(annotation: Any) -> bool:
    return annotation in _PARAM_TYPES or annotation == _NAMES or _optional_of(annotation) in _PARAM_TYPES


_TYPE_WORDS = {
    bool: "a bool",
    int: "an int",
    float: "a float (an int is accepted)",
    str: "a string",
    _NAMES: "a list of names (or comma-separated text)",
}


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
        if not _supported_param_type(field_type):
            raise TypeError(
                f"{cls.__name__}.Params.{field_name} has type {field_type!r}; supported: bool, int, float, str, "
                "one of those | None, tuple[str, ...]"
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
