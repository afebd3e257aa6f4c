"""The thin Ray adapter: Optuna searcher, ASHA scheduler, the trial driver, connecting to Ray.

One trial = one call of `trial_driver`. With one worker it runs the training loop in the
trial's own process (a TorchTrainer worker group costs many seconds to start). With
several workers it builds a TorchTrainer, whose workers report back through Ray's
TuneReportCallback (Ray 2.60, Train V2: `Tuner(trainer)` is gone). The conductor
(trial/sweep.py) uses nothing of Ray but what this module offers.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import optuna
import ray
import torch
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from trial import timings
from trial.config import ScalingConfig, SweepConfig, max_epochs
from trial.context import RayContext, load_state
from trial.errors import ConfigError, SweepFailed
from trial.loop import (
    MemberPool,
    MemberTrainings,
    TrialJob,
    best_member_weights,
    sweep_members,
    train_ensemble,
    train_solver,
)
from trial.progress import SweepProgress
from trial.runs import metric_file_label

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# -- search space and scheduler -----------------------------------------------------


def build_searcher(config: SweepConfig, max_concurrent: int, study_name: str) -> ConcurrencyLimiter:
    """OptunaSearch over the space, its study in an sqlite RDB storage that optuna-dashboard reads live."""
    search = config.search
    if search.algo == "random":
        sampler = optuna.samplers.RandomSampler(seed=config.seed)
    else:
        # Constant liar: running trials count as bad guesses, so concurrent trials spread out.
        sampler = optuna.samplers.TPESampler(seed=config.seed, constant_liar=max_concurrent > 1)
    space = {name: spec.to_optuna() for name, spec in search.space.items()}
    storage = optuna.storages.RDBStorage(config.optuna_storage_url)
    searcher = OptunaSearch(
        space=space, metric=search.metric, mode=config.metric_mode, sampler=sampler, study_name=study_name, storage=storage
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


class PruningASHA(ASHAScheduler):
    """ASHA that remembers which trials it stopped, so their runs can say `pruned`."""

    def __init__(self, pruned: set[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pruned = pruned

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get("epoch", 0) < self._max_t:
            self.pruned.add(trial.trial_id)
        return decision


class BestWeightsFiles(Callback):
    """Each trial that completes or is pruned leaves its best epoch's weights in its own
    folder of Tune's experiment, as `<solver>-<trial id>-<metric>=<value>.pt` (an ensemble
    trial one file per member, `<solver>-<trial id>-<member>-<metric>=<its value>.pt`): a
    plain state dict (`torch.load(path, weights_only=True)`, `solver.params.init_from`)
    that a person finds by its name, without opening checkpoints. A failed trial leaves none."""

    def __init__(self, solver: str, metric: str) -> None:
        self.solver = solver
        self.metric = metric

    @timings.timed("driver: best weights files")
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.checkpoint is None and not trial.last_result.get("checkpoint_path"):
            return  # ended before its first epoch's report
        state = _load_checkpoint(trial.last_result, trial.checkpoint)
        scores = state.get("best_member_scores") or {"": state["best_score"]}
        for member, weights in best_member_weights(state).items():
            # The loop keeps a score None while the metric is NaN in every epoch; the weights
            # are then the first epoch's, named by the same rule.
            score = scores[member]
            label = metric_file_label(self.metric, math.nan if score is None else score)
            # trial.path is the trial's folder in the sweep's storage (trial.local_path is only
            # a staging copy that Tune syncs there later), and the sweep's storage is a
            # local or shared path (SweepConfig.storage_path).
            name = "-".join(part for part in (self.solver, trial.trial_id, member, label) if part)
            path = Path(trial.path) / f"{name}.pt"
            try:
                torch.save(weights, path)
            except OSError as error:
                # A full disk must not turn a finished trial into a failed one (Tune would).
                warnings.warn(f"trial {trial.trial_id}: its best weights were not written to {path}: {error}")


def build_scheduler(config: SweepConfig, pruned: set[str]) -> TrialScheduler:
    scheduler = config.search.scheduler
    if scheduler.type == "none":
        return FIFOScheduler()
    return PruningASHA(
        pruned,
        time_attr="epoch",
        metric=config.search.metric,
        mode=config.metric_mode,
        max_t=max_epochs(config.search, config.solver.params.epochs),
        grace_period=scheduler.grace_period,
        reduction_factor=scheduler.reduction_factor,
    )


# -- the trial driver -----------------------------------------------------------------


def trial_driver(
    searched: dict[str, Any], *, job: TrialJob, scaling: ScalingConfig, storage: str, parallel: int = 1, ray_info: bool = True
) -> None:
    """One Tune trial: the solver loop in-process, an ensemble's members (in-process, or
    `parallel` Ray actors side by side), or a TorchTrainer worker group. Without
    `ray_info`, Ray's INFO lines in this process (a line per checkpoint) stay out of the
    driver's terminal; warnings and errors still reach it."""
    timings.since_package_import("trial: imports (a trial process's first trial)")
    if not ray_info:
        quiet_ray_info()
    job = job.with_trial_params(searched)
    if job.members:
        open_pool = functools.partial(_member_pool, job, parallel, scaling.cpus_per_worker)
        train_ensemble(job, RayContext.for_tune(job.root_seed), open_pool)
        return
    if scaling.num_workers == 1:
        train_solver(job, RayContext.for_tune(job.root_seed))
        return

    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train import ScalingConfig as TrainScaling
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        functools.partial(_train_worker, job, ray_info),
        scaling_config=TrainScaling(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker},
        ),
        run_config=RunConfig(
            # Named by the trial id, never a timestamp: a restarted trial finds its run again.
            name=tune.get_context().get_trial_id(),
            storage_path=storage,
            callbacks=[TuneReportCallback()],
            # Ray keeps the num_to_keep best checkpoints by the score and, besides them,
            # always the latest, even when it is worse (_save_state_and_delete_old_checkpoints
            # in ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py): 1 keeps
            # the best epoch's and the latest, which a restarted worker group resumes from.
            checkpoint_config=CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=job.metric, checkpoint_score_order=job.mode
            ),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
        ),
    )
    with timings.span("trial: TorchTrainer fit"):
        trainer.fit()


def _train_worker(job: TrialJob, ray_info: bool) -> None:
    timings.since_process_start("train worker: process start until its function runs")
    if not ray_info:
        quiet_ray_info()
    train_solver(job, RayContext.for_train(job.root_seed))


RAY_INFO_LOGGERS = ("ray.tune", "ray.train")
"""Where Ray's INFO lines come from in a sweep: checkpoints created, result files written."""


def quiet_ray_info() -> None:
    """Ray's INFO lines in this process off; WARNING and above stay."""
    for name in RAY_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _member_pool(job: TrialJob, parallel: int, cpus: int, states: Mapping[str, Any]) -> MemberPool:
    """Where an ensemble trial's members train: in this process one after another, or
    side by side in this process and `parallel` - 1 actors."""
    node_id = ray.get_runtime_context().get_node_id()
    if parallel == 1:
        return MemberTrainings(job, job.members, states, node_id)
    return SideBySide(job, parallel, cpus, states, node_id)


class SideBySide:
    """An ensemble's members in `parallel` groups, member i in group i mod parallel, each
    group training its members one after another: group 0 in the trial's own process,
    the others each in a Ray actor. The actors land in the trial's placement group (Tune
    captures a trial's child actors in it), one bundle each, and end with the trial.
    The actors are started first, so their start-up overlaps the building of group 0's
    models, and each epoch is sent to them before group 0 trains its own."""

    def __init__(self, job: TrialJob, parallel: int, cpus: int, states: Mapping[str, Any], node_id: str) -> None:
        self.labels = [member.label for member in job.members]
        groups = [job.members[index::parallel] for index in range(parallel)]

        def states_of(group: tuple) -> dict[str, Any]:
            return {member.label: states[member.label] for member in group if member.label in states}

        host = ray.remote(num_cpus=cpus, num_gpus=int(job.use_gpu))(_MemberHost)
        self.actors = [host.remote(job, group, states_of(group)) for group in groups[1:]]
        self.own = MemberTrainings(job, groups[0], states_of(groups[0]), node_id)

    def train_epoch(self, epoch: int) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
        pending = [actor.train_epoch.remote(epoch) for actor in self.actors]
        results = self.own.train_epoch(epoch)
        for part in ray.get(pending):
            results.update(part)
        return {label: results[label] for label in self.labels}

    def nodes(self) -> dict[str, str]:
        nodes = self.own.nodes()
        for part in ray.get([actor.nodes.remote() for actor in self.actors]):
            nodes.update(part)
        return {label: nodes[label] for label in self.labels}

    def close(self) -> None:
        # Now, not when the handles are collected at the process's exit, where an actor
        # still ending prints tracebacks into the trial's log.
        for actor in self.actors:
            ray.kill(actor)


class _MemberHost(MemberTrainings):
    """MemberTrainings in a Ray actor, on the node it was placed on."""

    def __init__(self, job: TrialJob, members: tuple, states: Mapping[str, Any]) -> None:
        super().__init__(job, members, states, ray.get_runtime_context().get_node_id())


def members_in_parallel(config: SweepConfig, cluster_cpus: float) -> int:
    """How many members of an ensemble trial train side by side: the CPUs left to each of
    max_concurrent trials, in cpus_per_worker steps, at most one per member. With 1 they
    train one after another in the trial's own process (no actor to start)."""
    if not config.search.ensemble:
        return 1
    members = len(sweep_members(config))
    # Trials at once: never more than the sweep has, so a 1-trial sweep's folds get every CPU.
    concurrent = min(config.search.max_concurrent, config.search.num_samples)
    per_trial = cluster_cpus // (concurrent * config.scaling.cpus_per_worker)
    return int(max(1, min(members, per_trial)))


def _trial_resources(scaling: ScalingConfig, parallel: int = 1) -> dict[str, float] | tune.PlacementGroupFactory:
    if parallel > 1:
        # One bundle per group of members: the trial's own process trains the first, an
        # actor in the trial's placement group each of the others.
        return tune.PlacementGroupFactory([{"CPU": scaling.cpus_per_worker, "GPU": int(scaling.use_gpu)}] * parallel)
    if scaling.num_workers == 1:
        return {"CPU": scaling.cpus_per_worker, "GPU": int(scaling.use_gpu)}
    # The driver only waits on its worker group, which asks for the CPUs itself; any
    # CPU share here (even 0.01) would leave the group one CPU short on a full machine.
    # Tune needs a non-empty request, hence one byte of memory.
    return {"CPU": 0, "memory": 1}


def check_cluster_fits(config: SweepConfig, *, local: bool) -> None:
    """A trial that asks for more than the cluster has would wait for it forever: on a local
    Ray (nothing will join it) that is an error; a cluster may still grow, so there a warning."""
    resources = ray.cluster_resources()
    scaling = config.scaling
    needs = {"CPU": scaling.num_workers * scaling.cpus_per_worker, "GPU": scaling.num_workers if scaling.use_gpu else 0}
    keys = {
        "CPU": "scaling.num_workers x scaling.cpus_per_worker",
        "GPU": "scaling.use_gpu with scaling.num_workers",
    }
    for resource, needed in needs.items():
        has = resources.get(resource, 0)
        if needed > has:
            message = f"{keys[resource]}: each trial needs {needed:g} {resource}s and the Ray cluster has {has:g}"
            if local:
                raise ConfigError(message)
            warnings.warn(f"{message}; trials wait until the cluster has them")


def concurrency_cap(config: SweepConfig, cluster_cpus: float, parallel: int = 1) -> int:
    """How many trials fit at once: worker groups (or an ensemble's `parallel` member
    actors) that cannot all start would wait forever."""
    per_trial = max(config.scaling.num_workers, parallel) * config.scaling.cpus_per_worker
    fits = max(1, int(cluster_cpus // per_trial))
    # A sweep of fewer trials than max_concurrent never runs more at once: nothing to warn of.
    if min(config.search.max_concurrent, config.search.num_samples) > fits:
        warnings.warn(
            f"search.max_concurrent={config.search.max_concurrent} lowered to {fits}: each trial needs "
            f"{per_trial} CPUs (scaling.num_workers x cpus_per_worker) and the cluster has {cluster_cpus:g}"
        )
    return min(config.search.max_concurrent, fits)


# -- connecting -----------------------------------------------------------------------------


def connect_ray(
    address: str | None = None, *, num_cpus: int | None = None, user_modules: list[str] = (), ray_info: bool = True
) -> None:
    """Join the cluster at `address` or RAY_ADDRESS, or start a local one on 127.0.0.1.

    `user_modules` (paths of the team's own modules, see trial.plugins.shipped_modules)
    travel to every worker with Ray's runtime_env, so nothing has to be installed there.
    Without `ray_info`, Ray's INFO lines in this process ("Started a local Ray
    instance") are left out; its warnings are not.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Workers import trial and solvers from the project even without an install; a job
    # submitted with --working-dir already has its own runtime environment, and the
    # user's modules in that folder with it.
    runtime_env = None
    if not os.environ.get("RAY_JOB_ID"):
        env_vars = {"PYTHONPATH": _pythonpath(), **_users_first(RAY_TRAIN_SETTINGS)}
        if not address:
            env_vars.update(_users_first(RAY_TRAIN_SETTINGS_LOCAL))
        runtime_env = {"env_vars": env_vars}
        if user_modules:
            runtime_env["py_modules"] = list(user_modules)
    logging_level = logging.INFO if ray_info else logging.WARNING
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging_level)
    else:
        # Ray 2.60 resolves 127.0.0.1 to this machine's address for its GCS and raylet, so
        # those listen beyond loopback; token auth (Ray's default for local clusters) is what
        # keeps others out. The dashboard is not started at all.
        ray.init(
            _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, runtime_env=runtime_env,
            logging_level=logging_level,
        )


RAY_TRAIN_SETTINGS = {
    # Ray Train's controller polls its workers every 2 s by default: each epoch's report
    # reaches Tune, and the end of training is seen, up to 2 s late. A poll is one small
    # remote call per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}
RAY_TRAIN_SETTINGS_LOCAL = {
    # A Ray started by trial on this machine has no preemptible cloud nodes to watch, and
    # no dashboard to take Ray Train's metrics: both would start an actor or callbacks per
    # worker group, on the CPUs its workers are starting on.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
}
"""What trial sets for Ray Train in the workers' environment: on any cluster trial joins
or starts, and on the local one it starts. Measured with benchmarks/overhead.py's workers
part (2026-12-01, 2 cores): a bare 2-worker TorchTrainer's fit() takes 7.6-8.4 s with
them, 10.5-12.4 s with Ray's defaults."""


def check_ray_train_settings() -> None:
    """A user's own RAY_TRAIN_HEALTH_CHECK_INTERVAL_S reaches every Train controller, which
    reads it with float() and polls that often: one that is not a positive number fails
    here, before anything starts, instead of inside each trial. (Ray reads the other two
    as booleans, where any value is one.)"""
    name = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    value = os.environ.get(name)
    if value is None:
        return
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"environment variable {name}: {value!r} is not a positive number of seconds")


def _users_first(settings: Mapping[str, str]) -> dict[str, str]:
    """`settings`, with the value of each the user's environment sets instead: theirs win,
    and reach the workers of a cluster trial joins too."""
    return {name: os.environ.get(name, value) for name, value in settings.items()}


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{PROJECT_ROOT}{os.pathsep}{existing}" if existing else str(PROJECT_ROOT)


def run_trials(
    config: SweepConfig, job: TrialJob, callback: Callback, pruned: set[str], *, study_name: str, verbose: int, resume: bool
) -> TrialResults:
    """Every trial of the sweep, through Tune; `resume` continues Tune's saved state.

    `verbose`: 0 nothing but warnings and errors; 1 the sweep's own progress
    (trial.progress) and no Ray INFO lines; 2 Tune's progress tables and Ray's INFO lines
    as well, beside one line per ended trial."""
    storage = str(config.storage_path)
    cluster_cpus = ray.cluster_resources().get("CPU", 1)
    parallel = members_in_parallel(config, cluster_cpus)
    trainable = tune.with_parameters(
        trial_driver, job=job, scaling=config.scaling, storage=storage, parallel=parallel, ray_info=verbose >= 2
    )
    progress = SweepProgress(
        metric=config.search.metric, mode=config.metric_mode, total=config.search.num_samples,
        epochs=max_epochs(config.search, config.solver.params.epochs), space=list(config.search.space),
        pruned=pruned, bar=None if verbose == 1 else False,  # beside Tune's tables, lines only
    )
    # A worker group retries inside its TorchTrainer (ray.train.FailureConfig); retrying
    # its trial as well would multiply the attempts.
    trial_retries = config.scaling.max_failures if config.scaling.num_workers == 1 else 0
    # The bar ends before what follows it (the summary, an interrupted sweep's message).
    with _tune_output(tables=verbose >= 2), contextlib.closing(progress):
        tuner = tune.Tuner(
            tune.with_resources(trainable, _trial_resources(config.scaling, parallel)),
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(config, concurrency_cap(config, cluster_cpus, parallel), study_name),
                scheduler=build_scheduler(config, pruned),
                num_samples=config.search.num_samples,
                trial_name_creator=lambda trial: trial.trial_id,
                trial_dirname_creator=lambda trial: trial.trial_id,
                # A finished trial's process (torch and the solvers already imported) runs the next.
                # Not for worker groups: Tune gives a finished trial 2 s to wind down before reuse,
                # and a TorchTrainer's shutdown takes longer, which would abort the next trial;
                # nor beside member actors, which end with their trial.
                reuse_actors=config.scaling.num_workers == 1 and parallel == 1,
            ),
            run_config=tune.RunConfig(
                name=config.name,
                storage_path=storage,
                callbacks=[
                    callback,
                    BestWeightsFiles(job.solver_name, config.search.metric),
                    *([progress] if verbose else []),
                ],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=trial_retries),
                verbose=1 if verbose >= 2 else 0,
            ),
            # Resuming runs Tune's own restore (what Tuner.restore does: trials, checkpoints,
            # searcher state) with the objects built here. Tuner.restore would instead use the
            # callback, scheduler and settings pickled when the sweep started (ray#41364).
            _tuner_kwargs={"resume_config": tune.ResumeConfig()} if resume else None,
        )
        return TrialResults(tuner.fit(), config)


@contextlib.contextmanager
def _tune_output(*, tables: bool) -> Iterator[None]:
    """Tune's (and Optuna's) console output for one sweep: tables and INFO lines, or nothing of their own.
    Tune's newer output engine prints a settings box and a TensorBoard hint even at
    verbose=0; its legacy one (RAY_AIR_NEW_OUTPUT=0, read at fit) prints nothing at 0."""
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    optuna_verbosity = optuna.logging.get_verbosity()
    ray_levels = {name: logging.getLogger(name).level for name in RAY_INFO_LOGGERS}
    if not tables:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in RDB ..."
        quiet_ray_info()
    try:
        yield
    finally:
        for name, level in ray_levels.items():
            logging.getLogger(name).setLevel(level)
        optuna.logging.set_verbosity(optuna_verbosity)
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved


# -- the trials and their results ------------------------------------------------------------


def can_resume(experiment_path: Path) -> bool:
    """Whether Tune left a sweep's state in `experiment_path` to continue from."""
    return tune.Tuner.can_restore(str(experiment_path))


@dataclass(frozen=True)
class BestTrial:
    trial_id: str
    searched: dict[str, Any]
    """Its searched values, by search space key."""
    state: Mapping[str, Any]
    """Its last checkpoint: `best_model` holds its best epoch's weights."""


class TrialResults:
    """What Tune's fit left: the trials, their errors, and the best one."""

    def __init__(self, results: Any, config: SweepConfig) -> None:
        self._results, self._config = results, config

    @property
    def experiment_path(self) -> str:
        return self._results.experiment_path

    @property
    def n_trials(self) -> int:
        return len(self._results)

    @property
    def n_failed(self) -> int:
        return len(self._results.errors)

    def best(self) -> BestTrial:
        """The best trial by the searched metric over every epoch; SweepFailed when every trial failed."""
        results, config = self._results, self._config
        if all(result.error is not None for result in results):
            first = results[0]
            raise SweepFailed(
                f"all {len(results)} trials failed; the first ({first.metrics.get('trial_id', '?')}): {_one_line(first.error)}"
            )
        best = results.get_best_result(metric=config.search.metric, mode=config.metric_mode, scope="all")
        searched = {name: best.config[name] for name in config.search.space}
        state = _load_checkpoint(best.metrics, best.checkpoint)
        return BestTrial(trial_id=best.metrics["trial_id"], searched=searched, state=state)


def _one_line(error: BaseException) -> str:
    """The innermost message of a (possibly Ray-wrapped) error, on one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _load_checkpoint(metrics: Mapping[str, Any], checkpoint: Any) -> Mapping[str, Any]:
    """A trial's last checkpoint, from its last metrics and Tune checkpoint: those of a
    Result after the sweep, or of a Trial (`last_result`, `checkpoint`) as it ends."""
    # A worker group reports its checkpoint's path as a metric (TuneReportCallback), and
    # its Tune trial has no checkpoint of its own.
    path = metrics.get("checkpoint_path")
    if path:
        return load_state(Path(path))
    with checkpoint.as_directory() as directory:
        return load_state(Path(directory))
