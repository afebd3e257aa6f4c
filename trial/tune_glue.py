"""Ray Tune glue: the search space as Optuna distributions, the Tuner, the trial driver.

One trial = one call of `trial_driver`. With one worker it runs the solver loop in the
trial's own process (a TorchTrainer worker group costs many seconds to start: 67 s
against 8 s for 4 tiny trials here). With several workers it builds a TorchTrainer,
whose workers report back through Ray's TuneReportCallback (Ray 2.60, Train V2:
`Tuner(trainer)` is gone).
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import optuna
import ray
import torch
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from trial.config import ScalingConfig, SweepConfig, max_epochs
from trial.context import RayContext, load_state
from trial.data import SPLITS, PreparedData, open_split, prepare_data, probability_frame
from trial.errors import ConfigError, SweepFailed, SweepInterrupted
from trial.report import REPORT_NAME, log_sweep_report
from trial.tags import BEST_TRIAL_TAG
from trial.plugins import shipped_modules
from trial.preflight import fit_debug_batch_size, preflight
from trial.tracking import Tracker, open_store
from trial.loop import TrialJob, load_trained_model, predict, split_metrics, train_solver

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SWEEP_FILE = "trial-sweep.json"
"""In Tune's experiment folder: the sweep's MLflow parent run id and resolved config."""


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


class FinishedTrialLines(Callback):
    """One line per finished trial under Tune's progress table: status, metric, time."""

    def __init__(self, metric: str, pruned: set[str]) -> None:
        self.metric = metric
        self.pruned = pruned

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        status = "pruned" if trial.trial_id in self.pruned else "completed"
        self._line(trial, status)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "failed")

    def _line(self, trial: Any, status: str) -> None:
        result = trial.last_result or {}
        value = result.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else f"no {self.metric}"
        print(
            f"trial {trial.trial_id} {status} after {result.get('epoch', 0)} epochs: {shown} "
            f"({result.get('time_total_s', 0.0):.1f} s)",
            flush=True,
        )


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


def trial_driver(searched: dict[str, Any], *, job: TrialJob, scaling: ScalingConfig, storage: str) -> None:
    """One Tune trial: the solver loop in-process, or a TorchTrainer worker group."""
    job = job.with_trial_params(searched)
    if scaling.num_workers == 1:
        train_solver(job, RayContext.for_tune(job.root_seed))
        return

    from ray.train import FailureConfig, RunConfig
    from ray.train import ScalingConfig as TrainScaling
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        functools.partial(_train_worker, job),
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
            failure_config=FailureConfig(max_failures=scaling.max_failures),
        ),
    )
    trainer.fit()


def _train_worker(job: TrialJob) -> None:
    train_solver(job, RayContext.for_train(job.root_seed))


def _trial_resources(scaling: ScalingConfig) -> dict[str, float]:
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


def concurrency_cap(config: SweepConfig, cluster_cpus: float) -> int:
    """How many trials fit at once: worker groups that cannot all start would wait forever."""
    per_trial = config.scaling.num_workers * config.scaling.cpus_per_worker
    fits = max(1, int(cluster_cpus // per_trial))
    if config.search.max_concurrent > fits:
        warnings.warn(
            f"search.max_concurrent={config.search.max_concurrent} lowered to {fits}: each trial needs "
            f"{per_trial} CPUs (scaling.num_workers x cpus_per_worker) and the cluster has {cluster_cpus:g}"
        )
        return fits
    return config.search.max_concurrent


# -- the sweep ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    best_trial_id: str
    best_params: dict[str, Any]
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    tracking_uri: str
    experiment_path: str
    n_trials: int
    n_pruned: int
    n_failed: int
    optuna_study: str
    report_path: Path | None = None
    """Where a person opens report.html: the logged artifact where the artifact store is
    local files, else a copy in experiment_path; None where it could not be built."""


def connect_ray(address: str | None = None, *, num_cpus: int | None = None, user_modules: list[str] = ()) -> None:
    """Join the cluster at `address` or RAY_ADDRESS, or start a local one on 127.0.0.1.

    `user_modules` (paths of the team's own modules, see trial.plugins.shipped_modules)
    travel to every worker with Ray's runtime_env, so nothing has to be installed there.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Workers import trial and solvers from the project even without an install; a job
    # submitted with --working-dir already has its own runtime environment, and the
    # user's modules in that folder with it.
    runtime_env = None
    if not os.environ.get("RAY_JOB_ID"):
        runtime_env = {"env_vars": {"PYTHONPATH": _pythonpath()}}
        if user_modules:
            runtime_env["py_modules"] = list(user_modules)
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        # Ray 2.60 resolves 127.0.0.1 to this machine's address for its GCS and raylet, so
        # those listen beyond loopback; token auth (Ray's default for local clusters) is what
        # keeps others out. The dashboard is not started at all.
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, runtime_env=runtime_env)


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{PROJECT_ROOT}{os.pathsep}{existing}" if existing else str(PROJECT_ROOT)


def check_storage(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"storage: {path} is not writable ({error.strerror or error})") from None


def run_sweep(
    config: SweepConfig,
    *,
    address: str | None = None,
    verbose: int = 1,
    resume: bool = False,
    resume_command: str = "run_sweep(config, resume=True)",
) -> SweepOutcome:
    """Run the whole sweep; user mistakes surface as UserError before any run is opened.

    `resume=True` continues the sweep of this config's name after its driver died or was
    interrupted: finished trials stay, unfinished ones restart from their checkpoints,
    Optuna keeps its history, and the same MLflow parent and child runs are written on.
    `resume_command` is what the Ctrl-C message tells the user to run.
    """
    # Keeping one checkpoint per trial forces a state snapshot per report; with epochs
    # of a few seconds Tune warns about it every time, which buries the progress table.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    store = open_store(config)  # an unreachable tracking store fails here, first
    check_storage(config.storage_path)
    experiment_path = config.storage_path / config.name
    parent_id = _saved_parent_id(config, experiment_path) if resume else None
    requested = config  # what a resume compares with: the config before it was fitted to the data
    prepared = prepare_data(config)
    if config.debug:
        config = fit_debug_batch_size(config, sweep_job(config, prepared))
    preflight(config, sweep_job(config, prepared))
    tracker = Tracker(config, store)
    if parent_id is not None:
        tracker.reopen_parent(parent_id)  # a finished or missing parent fails here, before Ray starts
    connect_ray(address, user_modules=shipped_modules(config.code_references()))
    check_cluster_fits(config, local=not (address or os.environ.get("RAY_ADDRESS")))

    if parent_id is None:
        tracker.start_parent({"trial.manifest_hash": prepared.manifest_hash})
        tracker.log_artifact(prepared.manifest_csv, "manifest")
        _save_sweep(requested, experiment_path, tracker.parent_id)
    pruned: set[str] = set()
    callback = tracker.callback(pruned)
    try:
        results = _tuner(config, prepared, callback, pruned, verbose, resume).fit()
        # Tune answers Ctrl-C by saving its state and returning early, not by raising.
        if len(callback.ended) < config.search.num_samples:
            raise SweepInterrupted(
                f"interrupted after {len(callback.ended)} of {config.search.num_samples} trials; "
                f"the runs are marked KILLED, Tune's state is in {results.experiment_path}; "
                f"resume with: {resume_command}"
            )
        # A run still RUNNING here was opened by a driver killed before Tune's next snapshot
        # saved its trial: resumed Tune never heard of that trial, so nothing else ends it.
        callback.end_unfinished("KILLED")
        outcome = _finish(config, tracker, callback, prepared, results)
    except BaseException as error:
        status = "KILLED" if isinstance(error, (KeyboardInterrupt, SweepInterrupted)) else "FAILED"
        callback.end_unfinished(status)
        tracker.end_parent(status)
        raise
    tracker.end_parent("FINISHED")
    # Once the parent has ended, so the report shows its final status (MLflow takes
    # artifacts on a finished run), and a report that fails leaves no run RUNNING.
    report_path = log_sweep_report(
        tracker.client, outcome.parent_run_id, config.tracking_uri, Path(outcome.experiment_path) / REPORT_NAME
    )
    return replace(outcome, report_path=report_path)


def _save_sweep(config: SweepConfig, experiment_path: Path, parent_id: str) -> None:
    """Beside Tune's state: which MLflow parent run this sweep writes, and its config."""
    experiment_path.mkdir(parents=True, exist_ok=True)
    record = {"parent_run_id": parent_id, "config": config.to_dict()}
    (experiment_path / SWEEP_FILE).write_text(json.dumps(record, indent=1))


def _saved_parent_id(config: SweepConfig, experiment_path: Path) -> str:
    """The parent run of the sweep to resume, once its Tune state and config check out."""
    path = experiment_path / SWEEP_FILE
    if not (path.is_file() and tune.Tuner.can_restore(str(experiment_path))):
        raise ConfigError(f"--resume: no sweep {config.name!r} to resume in {config.storage_path}; run it without --resume")
    record = json.loads(path.read_text())
    # The searcher, the checkpoints and the runs logged so far all belong to the old config.
    changed = _changed_keys(record["config"], json.loads(json.dumps(config.to_dict())))
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the one sweep {config.name!r} started with at {', '.join(changed)}; "
            "resume with the same config file and --set values"
        )
    return record["parent_run_id"]


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            changed
            for key in sorted(old.keys() | new.keys())
            for changed in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


def sweep_job(config: SweepConfig, prepared: PreparedData) -> TrialJob:
    """The job every trial of this sweep starts from, before its searched values."""
    return TrialJob(
        solver=config.solver.cls,
        params=config.solver.params,
        data=prepared,
        root_seed=config.seed,
        metric=config.search.metric,
        mode=config.metric_mode,
        threads=config.scaling.cpus_per_worker,
        use_gpu=config.scaling.use_gpu,
    )


def optuna_study_name(config: SweepConfig, callback: Any) -> str:
    """One study per sweep, named after its parent run so a resumed sweep finds it again."""
    return f"{config.name}-{callback.tracker.parent_id}"


def _tuner(
    config: SweepConfig, prepared: PreparedData, callback: Any, pruned: set[str], verbose: int, resume: bool
) -> tune.Tuner:
    job = sweep_job(config, prepared)
    storage = str(config.storage_path)
    trainable = tune.with_parameters(trial_driver, job=job, scaling=config.scaling, storage=storage)
    # A worker group retries inside its TorchTrainer (ray.train.FailureConfig); retrying
    # its trial as well would multiply the attempts.
    trial_retries = config.scaling.max_failures if config.scaling.num_workers == 1 else 0
    return tune.Tuner(
        tune.with_resources(trainable, _trial_resources(config.scaling)),
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(
                config, concurrency_cap(config, ray.cluster_resources().get("CPU", 1)), optuna_study_name(config, callback)
            ),
            scheduler=build_scheduler(config, pruned),
            num_samples=config.search.num_samples,
            trial_name_creator=lambda trial: trial.trial_id,
            trial_dirname_creator=lambda trial: trial.trial_id,
            # A finished trial's process (torch and the solvers already imported) runs the next.
            # Not for worker groups: Tune gives a finished trial 2 s to wind down before reuse,
            # and a TorchTrainer's shutdown takes longer, which would abort the next trial.
            reuse_actors=config.scaling.num_workers == 1,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=storage,
            callbacks=[callback, *([FinishedTrialLines(config.search.metric, pruned)] if verbose else [])],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=trial_retries),
            verbose=verbose,
        ),
        # Resuming runs Tune's own restore (what Tuner.restore does: trials, checkpoints,
        # searcher state) with the objects built here. Tuner.restore would instead use the
        # callback, scheduler and settings pickled when the sweep started (ray#41364).
        _tuner_kwargs={"resume_config": tune.ResumeConfig()} if resume else None,
    )


def _finish(config: SweepConfig, tracker: Tracker, callback: Any, prepared: PreparedData, results: Any) -> SweepOutcome:
    """Evaluate the best trial's best epoch on valid and test; record it on the parent run."""
    if all(result.error is not None for result in results):
        first = results[0]
        raise SweepFailed(
            f"all {len(results)} trials failed; the first ({first.metrics.get('trial_id', '?')}): {_one_line(first.error)}"
        )
    best = results.get_best_result(metric=config.search.metric, mode=config.metric_mode, scope="all")
    trial_id = best.metrics["trial_id"]
    searched = {name: best.config[name] for name in config.search.space}
    state = _load_checkpoint(best)
    job = sweep_job(config, prepared).with_trial_params(searched)
    model = load_trained_model(job, state["best_model"])
    frame = prepared.frame()
    metrics: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="trial-predictions-") as directory:
        for split_name in SPLITS:
            split = open_split(prepared, split_name, frame)
            proba = predict(model, split, torch.device("cpu"), batch_size=job.params.batch_size)
            metrics[split_name] = split_metrics(split, proba, prefix=split_name)
            probability_frame(prepared, split, proba).to_csv(Path(directory) / f"{split_name}_probability.csv", index=False)
        tracker.log_artifact(Path(directory), "predictions")
    valid, test = metrics["valid"], metrics["test"]
    tracker.log_params(tracker.parent_id, searched)
    tracker.client.set_tag(tracker.parent_id, BEST_TRIAL_TAG, trial_id)
    tracker.log_metrics(tracker.parent_id, {**valid, **test})
    best_run = callback.run_ids.get(trial_id)
    if best_run is not None:
        tracker.log_metrics(best_run, test)
        tracker.client.set_tag(best_run, "trial.best", "true")
    return SweepOutcome(
        parent_run_id=tracker.parent_id,
        best_trial_id=trial_id,
        best_params=searched,
        valid_metrics=valid,
        test_metrics=test,
        tracking_uri=config.tracking_uri,
        experiment_path=results.experiment_path,
        n_trials=len(results),
        n_pruned=len(callback.pruned_trials),
        n_failed=len(results.errors),
        optuna_study=optuna_study_name(config, callback),
    )


def _one_line(error: BaseException) -> str:
    """The innermost message of a (possibly Ray-wrapped) error, on one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _load_checkpoint(result: Any) -> Mapping[str, Any]:
    # A worker group reports its checkpoint's path as a metric (TuneReportCallback).
    path = result.metrics.get("checkpoint_path")
    if path:
        return load_state(Path(path))
    with result.checkpoint.as_directory() as directory:
        return load_state(Path(directory))
