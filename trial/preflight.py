"""Pre-flight: one training step and one evaluation batch in the driver, before Ray starts.

Like Lightning's sanity check, it runs the solver the way every trial will, on a few
rows of the real data, so that a misfit fails in a second with one line instead of
failing every trial inside Ray: a batch larger than the training split holds per
worker, a model that cannot take the data's shape, a searched value at the edge of its
range that breaks the model. The solver is built with its base params and with the
search space's extremes (every combination of them); a training step runs for each
variant that changes the model's parameter shapes, the batch size or a non-numeric
param, the rest only build their model.

`fit_debug_batch_size` is the debug mode's counterpart: a debug sample may be too small
for the configured batch size, and there the intent (check the set-up) is clear, so the
batch size is lowered to what the sample holds, with one warning line.
"""
from __future__ import annotations

import itertools
import time
import warnings
from typing import Any, Mapping

import torch

from trial.config import Distribution, SweepConfig
from trial.data import SplitData, open_split
from trial.errors import UserError, first_line
from trial.loop import Trainer, TrialJob, build_model, predict_proba, set_frozen, train_sampler

_BASE = "its base params"
PREFLIGHT_ROWS = 8
"""Rows of real data in the pre-flight's training step and evaluation batch."""


class PreflightError(UserError):
    """A solver variant failed its training step or evaluation batch on the real data."""


def preflight(config: SweepConfig, job: TrialJob) -> float:
    """Check every solver variant of the sweep on the real data; return the seconds it took.

    Raises PreflightError naming the solver, the param values and the cause.
    """
    started = time.perf_counter()
    kind = job.data.data_kind
    if kind is not None and kind not in job.solver.data_kinds:
        raise PreflightError(
            f"solver.name: {config.solver.name!r} trains on {' or '.join(job.solver.data_kinds)} data, and this "
            f"data's samples are shaped {list(job.data.input_shape)} ({kind} data)"
        )
    frame = job.data.frame()
    train, valid = open_split(job.data, "train", frame), open_split(job.data, "valid", frame)
    stepped: set[tuple] = set()
    for values in search_extremes(config.search.space):
        where = ", ".join(f"{key}={value!r}" for key, value in values.items()) or _BASE
        try:
            signature = _check_variant(job.with_trial_params(values), train, valid, config.scaling.num_workers, stepped)
        except UserError as error:
            raise PreflightError(f"pre-flight: solver {job.solver_name!r} with {where}: {error}") from None
        except Exception as error:  # the solver's own code failing on this data: the user's to fix
            raise PreflightError(
                f"pre-flight: solver {job.solver_name!r} with {where} failed on the data: {type(error).__name__}: {first_line(error)}"
            ) from None
        stepped.add(signature)
    return time.perf_counter() - started


def search_extremes(space: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """The base params (no searched value) first, then every combination of the searched extremes."""
    keys = list(space)
    corners = itertools.product(*(space[key].extremes for key in keys))
    return [{}, *(dict(zip(keys, corner)) for corner in corners)]


def _check_variant(job: TrialJob, train: SplitData, valid: SplitData, num_workers: int, stepped: set[tuple]) -> tuple:
    """Build this variant's solver and model; train one batch and evaluate one unless an
    earlier variant already did with the same shapes. Returns the variant's signature."""
    solver = job.make_solver()
    params = solver.params
    data = job.data
    sampler = train_sampler(job, train, params.batch_size, num_replicas=num_workers, drop_last=False)
    fits = batch_capacity(sampler)
    if params.batch_size > fits:
        raise UserError(
            f"an epoch of the train split holds {sampler.epoch_samples} samples, too few for one full batch of "
            f"{params.batch_size} on each of {num_workers} worker(s) (scaling.num_workers); "
            f"use solver.params.batch_size <= {fits}"
        )
    model = build_model(solver, data.input_shape, data.num_classes, job.pretrained)
    set_frozen(model, params, 0)
    signature = (
        params.batch_size,
        tuple((name, tuple(tensor.shape)) for name, tensor in model.state_dict().items()),
        tuple((key, value) for key, value in sorted(job.trial_params.items()) if not isinstance(value, float)),
    )
    if signature in stepped:
        return signature
    trainer = Trainer.for_data(solver, model, data, train, sampler, device=torch.device("cpu"), seed=0)
    # A few rows of the first batch: enough for shapes and batch statistics (a batch of
    # one still fails, as it would in the trials), cheap enough to run before every sweep.
    first_batch = next(iter(sampler))[:PREFLIGHT_ROWS]
    trainer.train_epoch(model, train.batches([first_batch]))
    rows = list(range(min(len(valid), PREFLIGHT_ROWS)))
    proba = predict_proba(model, valid.batches([rows]), trainer.device)
    if tuple(proba.shape) != (len(rows), data.num_classes):
        raise UserError(
            f"predict_proba returned shape {list(proba.shape)} for {len(rows)} rows, "
            f"expected [{len(rows)}, {data.num_classes}] (one probability per class)"
        )
    return signature


def batch_capacity(sampler: Any) -> int:
    """The largest batch size that gives every replica one full batch per epoch."""
    return sampler.epoch_samples // sampler.num_replicas


def fit_debug_batch_size(config: SweepConfig, job: TrialJob) -> SweepConfig:
    """A debug sweep's config with its batch sizes lowered to what the debug sample holds."""
    frame = job.data.frame()
    train = open_split(job.data, "train", frame)
    # The capacity does not depend on the batch size; any size that holds every key probes it.
    fits = batch_capacity(train_sampler(job, train, len(train), num_replicas=config.scaling.num_workers, drop_last=False))
    params = config.solver.params
    base = params.batch_size
    spec = config.search.space.get("batch_size")
    largest = max([base, *(spec.extremes if spec is not None else [])])
    if largest <= fits:
        return config
    warnings.warn(
        f"debug: solver.params.batch_size lowered from {largest} to {fits}, what one epoch of the debug "
        f"sample's train split holds on each of {config.scaling.num_workers} worker(s)"
    )
    update: dict[str, Any] = {
        "solver": config.solver.model_copy(update={"params": params.model_copy(update={"batch_size": min(base, fits)})})
    }
    if spec is not None:
        space = {**config.search.space, "batch_size": spec.capped(fits)}
        update["search"] = config.search.model_copy(update={"space": space})
    return config.model_copy(update=update)
