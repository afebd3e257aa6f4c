"""Quality bars of the built-in sweeps, each run through the real platform (Ray Tune +
Optuna + MLflow), printing the best trial's test figures against issue 4's bars:

  digits.yaml         best trial test accuracy >= 0.98
  breast_cancer.yaml  best trial test AUROC    >= 0.99
  demo.yaml           best trial test AUROC    >= 0.95, and per hospital

and, with 5-fold cross-validation (issue 13: "the ensemble must not be worse"), the
ensemble against the single fold a user would keep, on digits and breast_cancer:

  the same two configs with search.cv: true and data.split: {folds: 5, test: 0.2}, the
  rest (epochs, 6 trials, 2 at a time, scheduler) as in the file, so each trial trains
  5 models: the sweep's test/<m> (the best trial's 5 fold models, their mean
  probability) and its majority vote's test/vote/accuracy, against the single fold a
  user would keep without the ensemble: the one best on the rows it held out
  (valid/fold<k>/<m> on the parent run), and its test/fold<k>/<m>. Judged on the bar's
  metric (AUROC for breast_cancer, accuracy for digits): met when the ensemble's is >=
  that fold's. Printed beside it, not judged: the folds' mean, and in hindsight the fold
  best on test itself, a baseline nobody can pick without seeing test. About 1 minute
  for both on 2 cores.

    python benchmarks/quality.py [--only digits] [--only cv] [--workdir DIR] [--smoke]

By default every sweep above runs (the three bars, then the CV part); --only picks some
(repeatable; `cv` is the CV part). --smoke shrinks every sweep to 2 epochs and 2 trials
without a scheduler (a check of the script): its bars are not judged. The exit status
is 1 when a bar is missed; the CV comparison is printed (met/missed), never asserted.
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
from trial.runs import DEFAULT_STORE_FILE, TARGET_COLUMN, VOTE, proba_column, probability_artifact, sqlite_uri  # noqa: E402
from trial.sweep import run_sweep  # noqa: E402

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
# config file -> (test metric, bar)
BARS = {
    "digits": ("test/accuracy", 0.98),
    "breast_cancer": ("test/auroc", 0.99),
    "demo": ("test/auroc", 0.95),
}
CV_DATASETS = ("breast_cancer", "digits")
CV_FOLDS = 5
CV_OVERRIDES = ["search.cv=true", f"data.split={{folds: {CV_FOLDS}, test: 0.2}}"]
"""The CV part's changes to the config file (and a name of its own)."""
CV_METRICS = ("test/auroc", "test/accuracy")
SMOKE_OVERRIDES = ["solver.params.epochs=2", "search.num_samples=2", "search.scheduler={type: none}"]


def per_hospital_auroc(tracking_uri: str, parent_run_id: str, workdir: Path) -> dict[str, float]:
    client = MlflowClient(tracking_uri)
    local = client.download_artifacts(parent_run_id, probability_artifact("test"), str(workdir))
    frame = pd.read_csv(local)
    return {
        str(hospital): roc_auc_score(rows[TARGET_COLUMN] == 1, rows[proba_column(1)])
        for hospital, rows in frame.groupby("hos")
        if rows[TARGET_COLUMN].nunique() == 2
    }


def cv_against_single_folds(name: str, workdir: Path, smoke: bool) -> list[str]:
    """The 5-fold CV sweep of `name`.yaml: its ensemble's test figures against single folds'."""
    judged, _bar = BARS[name]
    overrides = [f"tracking.uri={sqlite_uri(workdir / DEFAULT_STORE_FILE)}", *CV_OVERRIDES, f"name={name}-cv{CV_FOLDS}"]
    config = load_config(SPACES / f"{name}.yaml", overrides + (SMOKE_OVERRIDES if smoke else []))
    outcome = run_sweep(config, verbose=0)
    logged = MlflowClient(outcome.tracking_uri).get_run(outcome.parent_run_id).data.metrics
    measure = judged.split("/")[1]
    # The fold a user would keep: the best on the rows it held out (test unseen).
    picked = max(outcome.members, key=lambda member: logged[f"valid/{member}/{measure}"])
    best_on_test, fold_mean = {}, {}
    for metric in CV_METRICS:
        split, metric_name = metric.split("/")
        folds = {member: logged[f"{split}/{member}/{metric_name}"] for member in outcome.members}
        best_on_test[metric] = max(folds.items(), key=lambda item: item[1])
        fold_mean[metric] = sum(folds.values()) / len(folds)
    ensemble = {metric: outcome.test_metrics[metric] for metric in CV_METRICS}
    vote = logged[f"test/{VOTE}/accuracy"]
    picked_test = logged[f"test/{picked}/{measure}"]

    def against(value: float) -> str:
        gap = ensemble[judged] - value
        return f"{ensemble[judged]:.4f} vs {value:.4f} ({gap:+.4f}), {'met' if gap >= 0 else 'missed'}"

    return [
        f"{name}.yaml {CV_FOLDS}-fold CV ({config.search.num_samples} trials, {config.solver.params.epochs} epochs; "
        f"the best trial's {len(outcome.members)} fold models): ensemble (mean probability) "
        + ", ".join(f"{metric} {value:.4f}" for metric, value in ensemble.items())
        + f"; majority vote test/accuracy {vote:.4f}",
        f"  the fold best on its own valid/{measure} ({picked}, {logged[f'valid/{picked}/{measure}']:.4f}): "
        f"{judged} {picked_test:.4f}; the folds' mean: "
        + ", ".join(f"{metric} {value:.4f}" for metric, value in fold_mean.items()),
        f"  ensemble not worse than the fold best on valid, on {judged}: {against(picked_test)}",
        "  hindsight, the fold best on test itself: "
        + ", ".join(f"{metric} {value:.4f} ({member})" for metric, (member, value) in best_on_test.items())
        + f"; the ensemble against it on {judged}: {against(best_on_test[judged][1])}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", choices=[*sorted(BARS), "cv"], action="append", help="run only these (repeatable); cv: the CV part"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="2 epochs, 2 trials per sweep: a check of the script")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="trial-quality-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # built-in datasets are generated under ./data
    connect_ray()

    failures = 0
    lines: list[str] = []
    selected = args.only or [*BARS, "cv"]
    for name in [name for name in selected if name in BARS]:
        metric, bar = BARS[name]
        overrides = [f"tracking.uri={sqlite_uri(workdir / DEFAULT_STORE_FILE)}"]
        config = load_config(SPACES / f"{name}.yaml", overrides + (SMOKE_OVERRIDES if args.smoke else []))
        outcome = run_sweep(config, verbose=0)
        value = outcome.test_metrics[metric]
        if args.smoke:
            verdict = "(smoke run: bar not judged)"
        else:
            failures += value < bar
            verdict = "ok" if value >= bar else "BELOW BAR"
        block = [f"{name}.yaml: best trial {metric} = {value:.4f} (bar >= {bar}) {verdict}"]
        if name == "demo":
            for hospital, auroc in per_hospital_auroc(outcome.tracking_uri, outcome.parent_run_id, workdir).items():
                block.append(f"  demo_ecg test/auroc at hospital {hospital}: {auroc:.4f}")
        print("\n".join(block), flush=True)
        lines += block
    if "cv" in selected:
        for name in CV_DATASETS:
            block = cv_against_single_folds(name, workdir, args.smoke)
            print("\n".join(block), flush=True)
            lines += block
    if args.smoke:
        lines.append("note: a smoke run (2 epochs, 2 trials per sweep): no figure here measures quality")
    print("\n".join(["", "quality summary:", *lines, f"stores: {workdir}"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
