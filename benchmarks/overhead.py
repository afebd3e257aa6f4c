"""Platform overhead: `trial run` against a plain Optuna loop and a bare Ray Tune trainable.

The same N trials (same solver, data, epochs, fixed param values, concurrency 2) run
  (a) `python trial/run.py --config X --quiet`: Ray Tune + Optuna + MLflow, as a user runs it;
  (b) a plain Optuna loop calling the same solver loop directly (n_jobs=2), no Ray, no MLflow;
  (c) a bare Ray Tune function trainable running the same solver loop (no Optuna, no MLflow);
each in its own Python process, timed from the outside, so every variant pays for its
own interpreter start, imports and (for a, c) Ray start. Two workloads: tiny (about
1 s of compute per trial) and realistic (10 to 20 s per trial on this machine).
(d) times one trial on 1 and on 2 TorchTrainer workers (a compute-bound solver) and
reports the worker group's start-up cost. The peak memory (PSS, shared pages counted
once) of (a) on the realistic workload shows the data is shared through the packed,
memory-mapped cache instead of being copied per trial.

    python benchmarks/overhead.py [--trials 8] [--only tiny|realistic|workers]

Targets (issue 5): realistic a/b <= 1.10, tiny a/c <= 1.3.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
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


def sweep_config(workdir: Path, workload: str, trials: int, num_workers: int = 1) -> Path:
    spec = WORKLOADS[workload]
    config = {
        "name": f"overhead-{workload}-w{num_workers}",
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
        run_config=tune.RunConfig(name="bare-tune", storage_path=config.storage, verbose=0),
    ).fit()
    return {"trial_seconds": [r.metrics["time_total_s"] for r in results]}


def run_child(variant: str, config_path: Path, memory: bool = False) -> dict:
    """Run one variant in a fresh Python process; wall time measured from out here."""
    if variant == "platform":
        command = [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--config", str(config_path), "--quiet"]
    else:
        command = [sys.executable, __file__, "--child", variant, "--config", str(config_path)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config_path.parent)
    sampler = PeakPss(process.pid) if memory else None
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if sampler:
        sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"{variant} failed ({process.returncode}):\n{stderr[-3000:]}")
    result = {"wall": wall}
    if variant != "platform":
        result.update(json.loads(stdout.strip().splitlines()[-1]))
    if sampler:
        result["peak_pss_mb"] = sampler.peak / 2**20
    return result


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


class PeakPss:
    """Samples the PSS of a process and all its descendants (Ray's raylet and workers)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, sum(_pss(pid) for pid in _descendants(self.pid)))


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


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the report ---------------------------------------------------------------------------


def compare(workload: str, trials: int, workdir: Path) -> list[str]:
    config = sweep_config(workdir, workload, trials)
    warm_up(config)
    memory = workload == "realistic"
    a = run_child("platform", config, memory=memory)
    a["trial_seconds"] = platform_trial_seconds(config)
    b = run_child("optuna", config)
    c = run_child("tune", config)
    lines = []
    for name, result in (("a platform", a), ("b plain optuna", b), ("c bare tune", c)):
        per_trial = sum(result["trial_seconds"]) / len(result["trial_seconds"])
        lines.append(f"{workload} {name}: wall {result['wall']:.1f} s, {len(result['trial_seconds'])} trials, {per_trial:.2f} s per trial")
    compute = sum(b["trial_seconds"]) / len(b["trial_seconds"])
    lines.append(f"{workload} fixed per-trial cost (a's wall x {CONCURRENCY} / N - b's per-trial compute): {a['wall'] * CONCURRENCY / trials - compute:.2f} s")
    lines.append(f"{workload} a/b (platform vs plain optuna): {a['wall'] / b['wall']:.2f}")
    lines.append(f"{workload} a/c (platform vs bare tune): {a['wall'] / c['wall']:.2f}")
    if memory:
        data_mb = sum(f.stat().st_size for f in (workdir / "trial_runs" / "cache").glob("arrays-*.npy")) / 2**20
        lines.append(f"{workload} peak PSS of (a), {CONCURRENCY} concurrent trials: {a['peak_pss_mb']:.0f} MiB (packed data {data_mb:.0f} MiB, mapped once)")
    return lines


def compare_workers(workdir: Path) -> list[str]:
    lines = []
    timings = {}
    for workers in (1, 2):
        config = sweep_config(workdir, "realistic", trials=1, num_workers=workers)
        warm_up(config)
        run_child("platform", config)
        data = yaml.safe_load(config.read_text())
        result_file = next((Path(data["storage"]) / data["name"]).glob("*/result.json"))
        iterations = [json.loads(line) for line in result_file.read_text().strip().splitlines()]
        epoch_times = [r["time_this_iter_s"] for r in iterations]
        steady = sorted(epoch_times[1:])[len(epoch_times[1:]) // 2]
        timings[workers] = (iterations[-1]["time_total_s"], epoch_times[0] - steady, steady)
    (t1, start1, epoch1), (t2, start2, epoch2) = timings[1], timings[2]
    lines.append(f"workers: 1 worker {t1:.1f} s (epoch {epoch1:.2f} s), 2 TorchTrainer workers {t2:.1f} s (epoch {epoch2:.2f} s)")
    lines.append(f"workers (d) epoch speedup 2 vs 1 workers: {epoch1 / epoch2:.2f}; whole trial: {t1 / t2:.2f}")
    lines.append(f"workers (d) worker group start-up cost: {start2 - start1:.1f} s (first epoch minus a steady epoch, over the in-process trial's)")
    return lines


def warm_up(config_path: Path) -> None:
    """Generate the dataset and build the manifest and packed cache before any timing."""
    from trial.config import load_config
    from trial.data import prepare_data

    prepare_data(load_config(config_path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--only", choices=["tiny", "realistic", "workers"], action="append")
    parser.add_argument("--child", choices=["optuna", "tune"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (run_plain_optuna if args.child == "optuna" else run_bare_tune)(args.config)
        print(json.dumps(result))
        return 0

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    workdir = Path(tempfile.mkdtemp(prefix="trial-overhead-"))
    lines = []
    for part in args.only or ["tiny", "realistic", "workers"]:
        part_lines = compare_workers(workdir) if part == "workers" else compare(part, args.trials, workdir)
        print("\n".join(part_lines), flush=True)
        lines += part_lines
    print("\n".join(["", "overhead summary:", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
