"""The pre-flight check's cost on the demo sweep, against what the driver pays anyway.

Each repetition runs, in fresh Python processes (so first-use costs are counted):
  (p) the driver's set-up as `trial run` does it on search_spaces/demo.yaml with the data
      cache warm: load the config, prepare the data, then the pre-flight, timed twice in
      the same process: cold (first use: torch's optimizer machinery imports
      torch._dynamo on the first optimizer built, a one-off of the driver process) and
      warm (a second call: the check's own work);
  (r) the local Ray start that follows the pre-flight in `trial run` (ray.init on
      127.0.0.1 as connect_ray does it), the fixed cost the pre-flight is set beside.
The variants alternate, each --repeats times; medians and spreads (max - min) are printed,
with the ratio of the cold pre-flight to the Ray start.

    python benchmarks/preflight.py [--repeats 5]

Target (issue 10): the pre-flight under 1 s on the demo sweep.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))


def measure_preflight(workdir: str) -> dict:
    import time

    from trial.config import load_config
    from trial.data import prepare_data
    from trial.preflight import preflight
    from trial.sweep import sweep_job

    config = load_config(None, [f"storage={workdir}/trial_runs", f"data.root={workdir}/data"])
    started = time.perf_counter()
    prepared = prepare_data(config)
    prepare_s = time.perf_counter() - started
    job = sweep_job(config, prepared)
    return {"prepare_s": prepare_s, "preflight_cold_s": preflight(config, job), "preflight_warm_s": preflight(config, job)}


def measure_ray_start(workdir: str) -> dict:
    import time

    import ray

    from trial.ray_backend import connect_ray

    started = time.perf_counter()
    connect_ray()
    ray_start_s = time.perf_counter() - started
    ray.shutdown()
    return {"ray_start_s": ray_start_s}


VARIANTS = {"preflight": measure_preflight, "ray": measure_ray_start}


def run_child(variant: str, workdir: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", variant, workdir], capture_output=True, text=True, check=True, cwd=workdir
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(VARIANTS[args.child[0]](args.child[1])))
        return

    with tempfile.TemporaryDirectory(prefix="trial-bench-preflight-") as workdir:
        run_child("preflight", workdir)  # generates the demo data and warms the data cache
        samples: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                for name, value in run_child(variant, workdir).items():
                    samples.setdefault(name, []).append(value)
    print(f"{'measure':<20}{'median s':>10}{'spread s':>10}   samples")
    for name, values in samples.items():
        shown = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:<20}{statistics.median(values):>10.3f}{max(values) - min(values):>10.3f}   {shown}")
    cold, warm = statistics.median(samples["preflight_cold_s"]), statistics.median(samples["preflight_warm_s"])
    ray_start = statistics.median(samples["ray_start_s"])
    print(f"pre-flight cold / Ray start: {cold / ray_start:.2f}   warm / Ray start: {warm / ray_start:.2f}")
    print(f"target: pre-flight < 1 s on the demo sweep: cold {cold:.2f} s, warm {warm:.2f} s -> "
          f"{'met' if cold < 1 else 'met warm only' if warm < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
