"""Platform overhead: `trial run` against a plain Optuna loop and a bare Ray Tune trainable,
and where the platform's extra time goes.

The same N trials (same solver, data, epochs, fixed param values, concurrency 2) run
  (a) `python trial/run.py --config X --quiet`: Ray Tune + Optuna + MLflow, as a user runs it;
  (b) a plain Optuna loop calling the same solver loop directly (n_jobs=2), no Ray, no MLflow;
  (c) a bare Ray Tune function trainable running the same solver loop (no Optuna, no MLflow);
each in its own Python process, timed from the outside, so every variant pays for its
own interpreter start, imports and (for a, c) Ray start. Two workloads: tiny (about
1 s of compute per trial) and realistic (10 to 20 s per trial on this machine). Each
workload runs --rounds rounds (default 3) of a, b, c interleaved (a b c a b c ...);
printed per variant: the median wall time, its spread (max - min) and every round's,
then the ratios of the medians.

Where the time goes: every variant runs with TRIAL_TIMINGS set (trial/timings.py), so
the platform's driver records its phases (process start and imports, tracking store,
data and manifest, pre-flight, Ray start, MLflow writes, the trials under Tune, the best
trial's evaluation and model, the report) and every trial process its own (process
start and imports, set-up, epochs, report and checkpoint). The breakdown prints their
medians over the rounds: the driver's in wall seconds, the trials' summed over the N
trials and per trial, beside the same spans of (b) and (c), which run the same
solver loop. "Trials' slots not in trial code" is what the trial phase's wall time
leaves in its 2 slots once every trial's own spans are taken out: Tune starting and
stopping trials, handling results, waiting.

(d) times one realistic trial on 1 and on 2 TorchTrainer workers (a compute-bound
solver) and reports the worker group's start-up cost, with the phases of its fit(),
beside (e) a bare TorchTrainer: 2 CPU workers whose function imports torch and reports
once, nothing of trial's, its fit() timed inside a process that has already started Ray,
and (f) the same under the Ray Train settings trial's local Ray runs with.

On the realistic workload every variant's processes are sampled: the peak memory (PSS,
shared pages counted once) of each variant, and (a)'s by kind of process (the driver,
trial processes, Ray's own) at the median round's peak, which shows the data is shared
through the packed, memory-mapped cache instead of being copied per trial; and the CPU
time of each kind of process: who shares the 2 cores with the trials.

    python benchmarks/overhead.py [--trials 8] [--rounds 3] [--only tiny|realistic|workers]

Goals (issue 14): realistic a/b <= 1.05, tiny a/c <= 1.15, tiny a/b <= 1.8, realistic
fixed per-trial cost <= 2 s, worker-group start-up <= 5 s, peak PSS <= 1.8 GiB.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

# Per-trial compute, calibrated on this 2-core machine with one torch thread per trial.
WORKLOADS = {
    "tiny": {"n_recordings": 300, "epochs": 2, "channels": 16},
    "realistic": {"n_recordings": 2000, "epochs": 4, "channels": 32},
}
CONCURRENCY = 2


def sweep_config(workdir: Path, workload: str, trials: int, num_workers: int = 1, round_: int = 0) -> Path:
    """The sweep's config file; each round its own name (Tune storage, Optuna study)."""
    spec = WORKLOADS[workload]
    config = {
        "name": f"overhead-{workload}-w{num_workers}-r{round_}",
        "seed": 0,
        "data": {
            "dataset": "demo_ecg",
            "dataset_params": {"n_recordings": spec["n_recordings"]},
            "root": str(workdir / "data"),
        },
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": spec["epochs"], "channels": spec["channels"]}},
        "search": {
            "metric": "valid/auroc",
            "num_samples": trials,
            "max_concurrent": CONCURRENCY,
            "scheduler": {"type": "none"},
            # One value: every variant trains the very same trials.
            "space": {"lr": {"type": "choice", "values": [1.0e-3]}},
        },
        "scaling": {"num_workers": num_workers, "cpus_per_worker": 1},
        "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}"},
        "storage": str(workdir / "trial_runs"),
    }
    path = workdir / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# -- the variants, each run in a child process -------------------------------------------


def run_plain_optuna(config_path: Path) -> dict:
    """(b): Optuna's own loop over the solver loop, threads for concurrency."""
    import optuna

    from trial.config import load_config
    from trial.context import LocalContext
    from trial.data import prepare_data
    from trial.sweep import sweep_job
    from trial.loop import train_solver

    config = load_config(config_path)
    job = sweep_job(config, prepare_data(config))
    durations: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        start = time.perf_counter()
        context = LocalContext(root_seed=config.seed)
        train_solver(job.with_trial_params({"lr": trial.suggest_categorical("lr", [1.0e-3])}), context)
        durations.append(time.perf_counter() - start)
        return context.reports[-1][config.search.metric]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=config.search.num_samples, n_jobs=CONCURRENCY)
    return {"trial_seconds": durations}


def run_bare_tune(config_path: Path) -> dict:
    """(c): a plain Tune function trainable around the same solver loop, metrics only."""
    import ray
    from ray import tune

    from trial.config import load_config
    from trial.context import RayContext
    from trial.data import prepare_data
    from trial.sweep import sweep_job
    from trial.loop import train_solver

    config = load_config(config_path)
    job = sweep_job(config, prepare_data(config))

    class MetricsOnly(RayContext):
        def report(self, metrics, checkpoint=None):  # noqa: ANN001 - RayContext's signature
            tune.report(dict(metrics))

    def trainable(searched: dict) -> None:
        base = RayContext.for_tune(job.root_seed)
        context = MetricsOnly(root_seed=base.root_seed, node_id=base.node_id, get_checkpoint_fn=lambda: None)
        train_solver(job.with_trial_params(searched), context)

    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}})
    results = tune.Tuner(
        tune.with_resources(trainable, {"CPU": 1}),
        param_space={"lr": 1.0e-3},
        tune_config=tune.TuneConfig(num_samples=config.search.num_samples, max_concurrent_trials=CONCURRENCY, reuse_actors=True),
        run_config=tune.RunConfig(name=f"bare-tune-{time.time_ns()}", storage_path=config.storage, verbose=0),
    ).fit()
    return {"trial_seconds": [r.metrics["time_total_s"] for r in results]}


def run_bare_torchtrainer(config_path: Path, settings: dict[str, str] | None = None) -> dict:
    """(e): Ray Train's own cost, nothing of trial's: a TorchTrainer of 2 CPU workers whose
    function imports torch and reports once; fit() timed after Ray has started, and until
    the function began in its slower worker. `settings`: environment for Ray's workers."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = yaml.safe_load(config_path.read_text())["storage"]
    started_files = Path(storage) / f"bare-torchtrainer-started-{time.time_ns()}"
    started_files.mkdir(parents=True)

    def report_once() -> None:
        import torch  # noqa: F401 - what every worker of trial's imports first
        from ray import train

        (started_files / str(train.get_context().get_world_rank())).write_text(str(time.time()))
        train.report({"done": 1})

    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, runtime_env={"env_vars": settings or {}})
    start, started_at = time.perf_counter(), time.time()
    TorchTrainer(
        report_once, scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"bare-torchtrainer-{time.time_ns()}", storage_path=storage),
    ).fit()
    function_started = max(float(path.read_text()) for path in started_files.iterdir())
    return {"fit_seconds": time.perf_counter() - start, "until_function": function_started - started_at}


def run_bare_torchtrainer_trials_settings(config_path: Path) -> dict:
    """(f): (e) with the Ray Train settings trial's own local Ray runs with."""
    from trial.ray_backend import RAY_TRAIN_SETTINGS, RAY_TRAIN_SETTINGS_LOCAL

    return run_bare_torchtrainer(config_path, {**RAY_TRAIN_SETTINGS, **RAY_TRAIN_SETTINGS_LOCAL})


CHILDREN = {
    "optuna": run_plain_optuna, "tune": run_bare_tune,
    "torchtrainer": run_bare_torchtrainer, "torchtrainer-settings": run_bare_torchtrainer_trials_settings,
}


@dataclass
class Run:
    """One variant's run in its own process."""

    wall: float
    started: float
    """Epoch seconds when the process was started."""
    trial_seconds: list[float] = field(default_factory=list)
    spans: list[dict] = field(default_factory=list)
    """trial.timings' spans of every process of the run."""
    peak_pss_mb: float = 0.0
    peak_parts_mb: dict[str, tuple[int, float]] = field(default_factory=dict)
    """At the peak: (processes, MiB) by kind of process."""
    cpu_parts: dict[str, tuple[int, float]] = field(default_factory=dict)
    """(processes, CPU seconds) by kind of process over the whole run."""
    extra: dict = field(default_factory=dict)


def run_child(variant: str, config_path: Path, sample: bool = False) -> Run:
    """Run one variant in a fresh Python process, trial.timings on; wall time measured from
    out here, and with `sample` its processes' memory and CPU time."""
    if variant == "platform":
        command = [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--config", str(config_path), "--quiet"]
    else:
        command = [sys.executable, __file__, "--child", variant, "--config", str(config_path)]
    spans_file = config_path.parent / f"timings-{variant}-{time.time_ns()}.jsonl"
    env = {**os.environ, "TRIAL_TIMINGS": str(spans_file)}
    started, start = time.time(), time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config_path.parent, env=env
    )
    sampler = ProcessSampler(process.pid) if sample else None
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if sampler:
        sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"{variant} failed ({process.returncode}):\n{stderr[-3000:]}")
    run = Run(wall=wall, started=started)
    if sampler:
        run.peak_pss_mb = sampler.peak / 2**20
        run.peak_parts_mb = {kind: (count, pss / 2**20) for kind, (count, pss) in sampler.peak_parts.items()}
        run.cpu_parts = sampler.cpu_seconds()
    if spans_file.exists():
        run.spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    if variant == "platform":
        run.trial_seconds = platform_trial_seconds(config_path)
    else:
        result = json.loads(stdout.strip().splitlines()[-1])
        run.trial_seconds = result.pop("trial_seconds", [])
        run.extra = result
    return run


def platform_trial_seconds(config_path: Path) -> list[float]:
    """(a)'s per-trial times: Tune's own time_total_s from each trial's result.json."""
    config = yaml.safe_load(config_path.read_text())
    experiment = Path(config["storage"]) / config["name"]
    seconds = []
    for result_file in experiment.glob("*/result.json"):
        lines = result_file.read_text().strip().splitlines()
        seconds.append(json.loads(lines[-1])["time_total_s"])
    return seconds


# -- memory ------------------------------------------------------------------------------


class ProcessSampler:
    """Samples a process and all its descendants (Ray's raylet, agents and workers): their
    summed PSS, and each one's CPU time, grouped at the end by kind of process."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self.peak_parts: dict[str, tuple[int, float]] = {}
        """At the peak: (processes, PSS) by kind of process (its name, or Ray's title for its workers)."""
        self._cpu: dict[int, float] = {}
        """pid -> CPU seconds at its last sample."""
        self._kinds: dict[int, Counter] = {}
        """pid -> how often it was seen as each kind: a Ray worker changes title with its work."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_seconds(self) -> dict[str, tuple[int, float]]:
        """(processes, CPU seconds) by kind of process, as last sampled (up to an interval short)."""
        return _by_kind((self._kinds[pid].most_common(1)[0][0], seconds) for pid, seconds in self._cpu.items())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sample = [(pid, _kind(pid), _pss(pid)) for pid in _descendants(self.pid)]
            for pid, kind, _ in sample:
                seconds = _cpu(pid)
                if seconds is not None:
                    self._cpu[pid] = seconds
                    self._kinds.setdefault(pid, Counter())[kind] += 1
            total = sum(pss for _, _, pss in sample)
            if total > self.peak:
                self.peak = total
                self.peak_parts = _by_kind((kind, pss) for _, kind, pss in sample)


def _by_kind(values: Iterable[tuple[str, float]]) -> dict[str, tuple[int, float]]:
    """(kind, value) pairs -> kind: (how many, their sum)."""
    parts: dict[str, tuple[int, float]] = {}
    for kind, value in values:
        count, total = parts.get(kind, (0, 0))
        parts[kind] = (count + 1, total + value)
    return parts


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _kind(pid: int) -> str:
    """`python trial/run.py` -> "python trial/run.py"; a Ray worker by its title (ray::trial_driver)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    words = [word.decode(errors="replace") for word in words if word]
    if not words:
        return name
    if words[0].startswith("ray::"):
        return words[0].split()[0].split(".")[0]  # ray::ImplicitFunc.train -> ray::ImplicitFunc
    return " ".join(Path(word).name if i == 0 else word for i, word in enumerate(words[:2]))[:48]


def _cpu(pid: int) -> float | None:
    """The process's user + system CPU seconds so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the report ---------------------------------------------------------------------------


VARIANTS = {"a": "platform", "b": "optuna", "c": "tune"}
LABELS = {"a": "platform (trial run)", "b": "plain Optuna loop", "c": "bare Ray Tune"}


def spread_line(name: str, values: list[float], unit: str = "s") -> str:
    return (f"{name:<46}median {statistics.median(values):7.2f} {unit}  spread {max(values) - min(values):6.2f}   "
            + " ".join(f"{value:.2f}" for value in values))


def compare(workload: str, trials: int, rounds: int, workdir: Path) -> list[str]:
    warm_up(sweep_config(workdir, workload, trials))
    # The realistic workload's processes are sampled in every variant, so each pays the same.
    sample = workload == "realistic"
    runs: dict[str, list[Run]] = {key: [] for key in VARIANTS}
    for round_ in range(rounds):
        config = sweep_config(workdir, workload, trials, round_=round_)
        for key, variant in VARIANTS.items():
            runs[key].append(run_child(variant, config, sample=sample))
            print(f"  {workload} round {round_ + 1} {key}: wall {runs[key][-1].wall:.1f} s", flush=True)
    wall = {key: [run.wall for run in variant_runs] for key, variant_runs in runs.items()}
    median = {key: statistics.median(values) for key, values in wall.items()}
    lines = [f"{workload}: {trials} trials, {CONCURRENCY} at once, {rounds} rounds interleaved; wall seconds per run"]
    lines += [spread_line(f"{workload} {key}) {LABELS[key]}", wall[key]) for key in VARIANTS]
    per_trial = {key: [statistics.mean(run.trial_seconds) for run in variant_runs] for key, variant_runs in runs.items()}
    lines += [spread_line(f"{workload} {key}) seconds per trial", per_trial[key]) for key in VARIANTS]
    compute = statistics.median(per_trial["b"])
    fixed = [run.wall * CONCURRENCY / trials - compute for run in runs["a"]]
    lines.append(spread_line(f"{workload} fixed per-trial cost", fixed) + f"   (a's wall x {CONCURRENCY} / N - b's per-trial compute)")
    bare_fixed = [run.wall * CONCURRENCY / trials - compute for run in runs["c"]]
    lines.append(spread_line(f"{workload} bare Tune's fixed per-trial cost", bare_fixed) + "   (the same of c: Ray Tune's own)")
    lines.append(f"{workload} a/b (platform vs plain Optuna, medians): {median['a'] / median['b']:.2f}")
    lines.append(f"{workload} a/c (platform vs bare Tune, medians): {median['a'] / median['c']:.2f}")
    lines.append(f"{workload} c/b (bare Tune vs plain Optuna, medians): {median['c'] / median['b']:.2f}   "
                 "(what running the trials under Ray Tune costs before anything of trial's)")
    if sample:
        data_mb = sum(f.stat().st_size for f in (workdir / "trial_runs" / "cache").glob("arrays-*.npy")) / 2**20
        for key in VARIANTS:
            pss = [run.peak_pss_mb for run in runs[key]]
            lines.append(spread_line(f"{workload} peak PSS of ({key})", pss, "MiB")
                         + (f"   (packed data {data_mb:.0f} MiB, mapped once)" if key == "a" else ""))
        at_median = sorted(runs["a"], key=lambda run: run.peak_pss_mb)[len(runs["a"]) // 2]
        lines.append(f"{workload} peak PSS of (a) by process, the median round's: " + ", ".join(
            f"{kind} x{count} {mb:.0f}" for kind, (count, mb) in sorted(at_median.peak_parts_mb.items(), key=lambda item: -item[1][1])))
        lines += cpu_by_kind(workload, runs)
    lines += breakdown(workload, runs, trials)
    return lines


def cpu_by_kind(workload: str, runs: dict[str, list[Run]]) -> list[str]:
    """CPU seconds each kind of process used over the whole run, medians over the rounds:
    who shares the 2 cores with the trials."""
    lines = [f"{workload} CPU seconds by kind of process, medians over the rounds (processes in the median round)"]
    for key, variant_runs in runs.items():
        kinds = sorted({kind for run in variant_runs for kind in run.cpu_parts})
        parts = []
        for kind in kinds:
            seconds = statistics.median(run.cpu_parts.get(kind, (0, 0.0))[1] for run in variant_runs)
            count = statistics.median_low(run.cpu_parts.get(kind, (0, 0.0))[0] for run in variant_runs)
            parts.append((seconds, f"{kind} x{count} {seconds:.1f}"))
        total = statistics.median(sum(seconds for _, seconds in run.cpu_parts.values()) for run in variant_runs)
        lines.append(f"  {key}) total {total:.1f}: " + ", ".join(text for _, text in sorted(parts, reverse=True)))
    return lines


def breakdown(workload: str, runs: dict[str, list[Run]], trials: int) -> list[str]:
    """Where (a)'s time goes, from trial.timings' spans (medians over the rounds), beside
    the same trial spans of (b) and (c)."""
    def totals(run: Run) -> dict[str, float]:
        summed: dict[str, float] = {}
        for span in run.spans:
            summed[span["span"]] = summed.get(span["span"], 0.0) + span["seconds"]
        return summed

    per_run = {key: [totals(run) for run in variant_runs] for key, variant_runs in runs.items()}

    def median_of(key: str, name: str) -> float:
        return statistics.median(summed.get(name, 0.0) for summed in per_run[key])

    names = sorted({name for summed in per_run["a"] for name in summed})
    lines = [f"{workload} breakdown of (a), medians over the rounds (driver: wall s; trial: s summed over the {trials} trials, and per trial; b and c beside)"]
    for name in (name for name in names if name.startswith("driver:")):
        lines.append(f"  {name:<50}{median_of('a', name):8.2f} s")
    last_ends = [max(span["start"] + span["seconds"] for span in run.spans) - run.started for run in runs["a"]]
    tails = [run.wall - end for run, end in zip(runs["a"], last_ends)]
    lines.append(f"  {'driver: after the report (summary, Ray shutdown, exit)':<50}{statistics.median(tails):8.2f} s")
    for name in (name for name in names if not name.startswith("driver:")):
        a = median_of("a", name)
        others = "  ".join(f"{key} {median_of(key, name) / trials:6.2f}" for key in ("b", "c"))
        lines.append(f"  {name:<50}{a:8.2f} s  per trial a {a / trials:6.2f}  {others}")
    trial_spans = [name for name in names if name.startswith("trial:")]
    gaps = []
    for summed in per_run["a"]:
        slots = summed.get("driver: trials (Tune)", 0.0) * CONCURRENCY
        gaps.append((slots - sum(summed.get(name, 0.0) for name in trial_spans)) / trials)
    lines.append(f"  {'trials slots not in trial code, per trial':<50}{statistics.median(gaps):8.2f} s   "
                 f"(the trial phase x {CONCURRENCY} slots, less the trials' own spans: Tune starting, stopping, handling results, waiting)")
    return lines


def compare_workers(workdir: Path, rounds: int) -> list[str]:
    """(d) one realistic trial on 1 and on 2 TorchTrainer workers, (e) a bare TorchTrainer
    with Ray's defaults and (f) with trial's Ray Train settings, interleaved."""
    warm_up(sweep_config(workdir, "realistic", trials=1, num_workers=2))
    start_up: dict[int, list[float]] = {1: [], 2: []}
    total: dict[int, list[float]] = {1: [], 2: []}
    epoch: dict[int, list[float]] = {1: [], 2: []}
    bare: dict[str, list[dict]] = {"torchtrainer": [], "torchtrainer-settings": []}
    phases: list[dict[str, float]] = []
    for round_ in range(rounds):
        for workers in (1, 2):
            config = sweep_config(workdir, "realistic", trials=1, num_workers=workers, round_=round_)
            run = run_child("platform", config)
            if workers == 2:
                phases.append(worker_group_phases(run))
            data = yaml.safe_load(config.read_text())
            result_file = next((Path(data["storage"]) / data["name"]).glob("*/result.json"))
            iterations = [json.loads(line) for line in result_file.read_text().strip().splitlines()]
            epoch_times = [r["time_this_iter_s"] for r in iterations]
            steady = statistics.median(epoch_times[1:])
            total[workers].append(iterations[-1]["time_total_s"])
            epoch[workers].append(steady)
            start_up[workers].append(epoch_times[0] - steady)
        for variant, runs in bare.items():
            runs.append(run_child(variant, sweep_config(workdir, "tiny", trials=1, round_=round_)).extra)
        print(f"  workers round {round_ + 1}: 2-worker first epoch over steady {start_up[2][-1]:.1f} s, "
              f"bare TorchTrainer fit {bare['torchtrainer'][-1]['fit_seconds']:.1f} s", flush=True)
    group_cost = [two - one for one, two in zip(start_up[1], start_up[2])]
    return [
        f"workers: one realistic trial, {rounds} rounds interleaved",
        spread_line("workers (d) 1 worker, whole trial", total[1]),
        spread_line("workers (d) 2 workers, whole trial", total[2]),
        spread_line("workers (d) steady epoch, 1 worker", epoch[1]),
        spread_line("workers (d) steady epoch, 2 workers", epoch[2]),
        f"workers (d) epoch speedup 2 vs 1 workers (medians): {statistics.median(epoch[1]) / statistics.median(epoch[2]):.2f}",
        spread_line("workers (d) worker group start-up", group_cost)
        + "   (2 workers' first epoch minus a steady one, over the in-process trial's)",
        spread_line("workers (e) bare TorchTrainer fit()", [run["fit_seconds"] for run in bare["torchtrainer"]])
        + "   (2 workers import torch and report once; Ray's defaults)",
        spread_line("workers (e) fit() until the function runs", [run["until_function"] for run in bare["torchtrainer"]]),
        spread_line("workers (f) bare, trial's Ray settings, fit()", [run["fit_seconds"] for run in bare["torchtrainer-settings"]])
        + "   (the Ray Train settings trial's local Ray runs with)",
        spread_line("workers (f) fit() until the function runs", [run["until_function"] for run in bare["torchtrainer-settings"]]),
        "workers (d) the 2-worker trial's TorchTrainer.fit(), from trial.timings' spans:",
        *(spread_line(f"  {name}", [run_phases[name] for run_phases in phases]) for name in phases[0]),
    ]


def worker_group_phases(run: Run) -> dict[str, float]:
    """Where a 2-worker trial's TorchTrainer.fit() spends its time: until the worker
    processes start (Train's controller and its helper actors), until the train function
    runs in them (Ray's worker start, Train's context, the process group), the function's
    set-up, and from the last report until fit() returns (the end seen, the group stopped)."""
    def spans(name: str) -> list[dict]:
        return [span for span in run.spans if span["span"] == name]

    (fit,) = spans("trial: TorchTrainer fit")
    started = spans("train worker: process start until its function runs")
    set_up = spans("trial: set-up (restore, seed, data, model)")
    last_report = max(span["start"] + span["seconds"] for span in spans("trial: report and checkpoint"))
    return {
        "fit() until worker processes start": min(span["start"] for span in started) - fit["start"],
        "fit() until the function runs": max(span["start"] + span["seconds"] for span in started) - fit["start"],
        "worker start until the function runs": max(span["seconds"] for span in started),
        "the function's set-up": max(span["seconds"] for span in set_up),
        "last report until fit() returns": fit["start"] + fit["seconds"] - last_report,
        "fit() in all": fit["seconds"],
    }


def warm_up(config_path: Path) -> None:
    """Generate the dataset and build the manifest and packed cache before any timing."""
    from trial.config import load_config
    from trial.data import prepare_data

    prepare_data(load_config(config_path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant, interleaved (default 3)")
    parser.add_argument("--only", choices=["tiny", "realistic", "workers"], action="append")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.config)))
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    workdir = Path(tempfile.mkdtemp(prefix="trial-overhead-"))
    lines = []
    for part in args.only or ["tiny", "realistic", "workers"]:
        part_lines = compare_workers(workdir, args.rounds) if part == "workers" else compare(part, args.trials, args.rounds, workdir)
        print("\n".join(part_lines), flush=True)
        lines += part_lines
    print("\n".join(["", "overhead summary:", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
