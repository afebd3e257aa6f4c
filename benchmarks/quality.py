"""Quality bars of the built-in sweeps, each run through the real platform (Ray Tune +
Optuna + MLflow), printing the best trial's test figures against issue 4's bars:

  digits.yaml         best trial test accuracy >= 0.98
  breast_cancer.yaml  best trial test AUROC    >= 0.99
  demo.yaml           best trial test AUROC    >= 0.95, and per hospital

    python benchmarks/quality.py [--only digits] [--workdir DIR]

Stores (MLflow sqlite, Tune storage, generated data) go to --workdir (default: a new
temporary folder), so a run leaves the project's own mlflow.db alone.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from trial.config import load_config  # noqa: E402
from trial.ray_backend import connect_ray  # noqa: E402
from trial.runs import DEFAULT_STORE_FILE, TARGET_COLUMN, proba_column, probability_artifact, sqlite_uri  # noqa: E402
from trial.sweep import run_sweep  # noqa: E402

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
# config file -> (test metric, bar)
BARS = {
    "digits": ("test/accuracy", 0.98),
    "breast_cancer": ("test/auroc", 0.99),
    "demo": ("test/auroc", 0.95),
}


def per_hospital_auroc(tracking_uri: str, parent_run_id: str, workdir: Path) -> dict[str, float]:
    client = MlflowClient(tracking_uri)
    local = client.download_artifacts(parent_run_id, probability_artifact("test"), str(workdir))
    frame = pd.read_csv(local)
    return {
        str(hospital): roc_auc_score(rows[TARGET_COLUMN] == 1, rows[proba_column(1)])
        for hospital, rows in frame.groupby("hos")
        if rows[TARGET_COLUMN].nunique() == 2
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BARS), action="append", help="run only these (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="trial-quality-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # built-in datasets are generated under ./data
    connect_ray()

    failures = 0
    lines: list[str] = []
    for name in args.only or list(BARS):
        metric, bar = BARS[name]
        config = load_config(SPACES / f"{name}.yaml", [f"tracking.uri={sqlite_uri(workdir / DEFAULT_STORE_FILE)}"])
        outcome = run_sweep(config, verbose=0)
        value = outcome.test_metrics[metric]
        failures += value < bar
        block = [f"{name}.yaml: best trial {metric} = {value:.4f} (bar >= {bar}) {'ok' if value >= bar else 'BELOW BAR'}"]
        if name == "demo":
            for hospital, auroc in per_hospital_auroc(outcome.tracking_uri, outcome.parent_run_id, workdir).items():
                block.append(f"  demo_ecg test/auroc at hospital {hospital}: {auroc:.4f}")
        print("\n".join(block), flush=True)
        lines += block
    print("\n".join(["", "quality summary:", *lines, f"stores: {workdir}"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
