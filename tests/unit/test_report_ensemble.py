"""The report's ensemble section (search.cv, search.repeats), from a small real MLflow store:
test_report's sweep, plus what an ensemble sweep's parent run holds (trial/runs.py)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from tests.unit.test_report import figures, make_sweep, store  # noqa: F401 (store: a fixture)
from trial.metrics import METRIC_NAMES, classification_metrics
from trial.report import ENSEMBLE_ROW, VOTE_ROW, build_report, ensemble_metrics, load_sweep
from trial.runs import MEMBERS_TAG, VOTE, member_label, member_probability_artifact, probability_artifact

HEADING = "<h2>3b. Ensemble of the best trial&#x27;s members on the test split</h2>"  # as html.escape writes it
FOLDS = tuple(member_label(fold, None) for fold in range(3))
HOSPITALS = ("A", "B", "C")  # test_report's manifest: the first stratify column besides the target


class Ensemble(NamedTuple):
    parent: str
    classes: list[int]
    ensemble: pd.DataFrame
    """The ensemble's test predictions, as logged."""
    members: dict[str, pd.DataFrame]
    """Each member's test predictions, as logged."""


def _proba(frame: pd.DataFrame) -> np.ndarray:
    return frame.filter(like="proba_").to_numpy()


def _with_proba(frame: pd.DataFrame, proba: np.ndarray) -> pd.DataFrame:
    return frame.assign(**dict(zip(frame.filter(like="proba_").columns, proba.T)))


def _vote(members: Iterable[pd.DataFrame]) -> np.ndarray:
    """Each row's most frequent predicted class over the members (ties: the lowest class)."""
    predicted = np.stack([_proba(frame).argmax(axis=1) for frame in members], axis=1)
    return np.array([np.bincount(row).argmax() for row in predicted])


def _log_csv(client: MlflowClient, parent: str, frame: pd.DataFrame, artifact: str, folder: Path) -> None:
    path = folder / artifact
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    client.log_artifact(parent, str(path), str(Path(artifact).parent))


def _log_metrics(client: MlflowClient, parent: str, prefix: str, frame: pd.DataFrame) -> None:
    for name, value in classification_metrics(frame["target"].to_numpy(), _proba(frame)).items():
        client.log_metric(parent, f"{prefix}/{name}", value)


def make_ensemble(
    client: MlflowClient,
    tmp_path: Path,
    experiment: str,
    *,
    classes: list[int],
    members: tuple[str, ...] = FOLDS,
    logged: tuple[str, ...] | None = None,
    seed: int = 0,
) -> Ensemble:
    """make_sweep's parent run made an ensemble's: the members tag, each member's test
    predictions (the best trial's, perturbed; only `logged`'s where given) and metrics, the
    ensemble's predictions (the members' mean) in place of the best trial's, its metrics
    and its majority vote's."""
    parent = make_sweep(client, tmp_path, experiment, classes=classes, seed=seed)
    rng = np.random.default_rng(seed)
    best = pd.read_csv(client.download_artifacts(parent, probability_artifact("test"), str(tmp_path)))
    frames = {}
    for member in members:
        logits = np.log(_proba(best)) + rng.normal(size=(len(best), len(classes)))
        frames[member] = _with_proba(best, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
        if logged is None or member in logged:
            _log_csv(client, parent, frames[member], member_probability_artifact(member, "test"), tmp_path / "logged")
        _log_metrics(client, parent, f"test/{member}", frames[member])
    ensemble = _with_proba(best, np.mean([_proba(frame) for frame in frames.values()], axis=0))
    _log_csv(client, parent, ensemble, probability_artifact("test"), tmp_path / "logged")
    _log_metrics(client, parent, "test", ensemble)
    votes = _vote(frames.values())
    client.log_metric(parent, f"test/{VOTE}/accuracy", accuracy_score(ensemble["target"], votes))
    client.log_metric(parent, f"test/{VOTE}/f1_macro", f1_score(ensemble["target"], votes, average="macro"))
    client.log_metric(parent, "valid/auroc_std", 0.0125)
    client.set_tag(parent, MEMBERS_TAG, ",".join(members))
    return Ensemble(parent, classes, ensemble, frames)


@pytest.fixture(scope="module", params=[[0, 1], [0, 1, 2]], ids=["binary", "multiclass"])
def cv(request, store, tmp_path_factory) -> tuple[Ensemble, str]:
    """A 3-fold CV sweep and its report."""
    client, _ = store
    tmp_path = tmp_path_factory.mktemp("cv")
    made = make_ensemble(client, tmp_path, f"cv-{len(request.param)}", classes=request.param, seed=len(request.param))
    return made, build_report(client, made.parent, tmp_path / "out").read_text(encoding="utf-8")


def _auroc(frame: pd.DataFrame) -> float:
    """sklearn's: class 1 against the rest (binary), the mean over one-vs-rest classes (multiclass)."""
    proba = _proba(frame)
    if proba.shape[1] == 2:
        return roc_auc_score(frame["target"] == 1, proba[:, 1])
    return roc_auc_score(frame["target"], proba, multi_class="ovr", average="macro")


def _expected_rows(made: Ensemble) -> list[list[object]]:
    """Each row of the table from the CSVs alone: the metrics as the sweep logs them, the vote's
    as sklearn scores it, and sklearn's AUROC per hospital."""
    y = made.ensemble["target"].to_numpy()
    votes = _vote(made.members.values())
    vote_metrics = {"accuracy": accuracy_score(y, votes), "f1_macro": f1_score(y, votes, average="macro")}
    rows = []
    for name, frame in [(ENSEMBLE_ROW, made.ensemble), (VOTE_ROW, None), *made.members.items()]:
        if frame is None:
            rows.append([name, *(vote_metrics.get(metric, math.nan) for metric in METRIC_NAMES), *[math.nan] * 3])
        else:
            metrics = classification_metrics(y, _proba(frame))
            rows.append([name, *metrics.values(), *(_auroc(frame[frame["hos"] == h]) for h in HOSPITALS)])
    return rows


def _cells(values: Iterable[float]) -> str:
    return "".join(f"<td>{value:.4g}</td>" if math.isfinite(value) else "<td>—</td>" for value in values)


def test_the_section_follows_the_best_trials_and_names_its_members(cv) -> None:
    _, page = cv
    assert page.index("<h2>3. Best trial") < page.index(HEADING) < page.index("<h2>4. Test metrics per stratum value")
    assert "The best trial trained 3 members, one per cross-validation fold (search.cv): fold0, fold1, fold2." in page
    assert "the mean of the members&#x27; probabilities" in page
    assert "their standard deviations: auroc 0.0125." in page
    assert "The valid predictions above are out-of-fold" in page


def test_the_table_holds_the_ensemble_the_vote_and_each_member(cv, store) -> None:
    made, page = cv
    client, _ = store
    sweep = load_sweep(client, made.parent)
    assert sweep.members == FOLDS
    # The ensemble's file is read as the sweep's test predictions, not a member's of the same name.
    assert np.array_equal(_proba(sweep.predictions["test"]), _proba(made.ensemble))
    table = ensemble_metrics(sweep)
    assert list(table.columns) == ["model", *METRIC_NAMES, *(f"auroc hos={h}" for h in HOSPITALS)]
    expected = _expected_rows(made)
    assert table["model"].tolist() == [ENSEMBLE_ROW, VOTE_ROW, *FOLDS]
    for got, want in zip(table.values.tolist(), expected):
        assert got[0] == want[0] and got[1:] == pytest.approx(want[1:], nan_ok=True)
    # On the page: the ensemble's row highlighted, the vote's blanks as the report writes them.
    assert f'<tr class="best"><td>{ENSEMBLE_ROW}</td>{_cells(expected[0][1:])}</tr>' in page
    for row in expected[1:]:
        assert f"<tr><td>{row[0]}</td>{_cells(row[1:])}</tr>" in page


def test_the_roc_draws_the_ensemble_thick_and_each_member_thin(cv) -> None:
    made, page = cv
    binary = len(made.classes) == 2
    title = f"Ensemble ROC (test, {'positive class 1' if binary else 'one-vs-rest'})"
    chance, *curves = figures(page)[title]["data"]
    assert chance["name"] == "chance"
    positives = [1] if binary else made.classes
    expected = []
    for c in positives:
        for name, frame in [("ensemble", made.ensemble), *made.members.items()]:
            auc = roc_auc_score(frame["target"] == c, frame[f"proba_{c}"])
            expected.append((f"class {c}", f"{name} (AUC {auc:.3f})"))
    assert [(trace["legendgrouptitle"]["text"], trace["name"]) for trace in curves] == expected
    assert [trace["line"]["width"] for trace in curves] == [3, 1, 1, 1] * len(positives)
    # One colour per class, the ensemble's and its members' alike.
    colours = [trace["line"]["color"] for trace in curves]
    assert [len(set(colours[i : i + 4])) for i in range(0, len(colours), 4)] == [1] * len(positives)
    assert len(set(colours)) == len(positives)


def test_a_sweep_without_an_ensemble_has_no_such_section(store, tmp_path: Path) -> None:
    client, _ = store
    parent = make_sweep(client, tmp_path, "plain")
    sweep = load_sweep(client, parent)
    assert (sweep.members, sweep.member_predictions) == ((), {})
    page = build_report(client, parent, tmp_path).read_text(encoding="utf-8")
    body = page[page.index("</head>") :]  # the embedded plotly.js library is in the head
    assert "Ensemble" not in body and "ensemble" not in body


def test_repeats_with_a_member_file_missing(store, tmp_path: Path) -> None:
    client, _ = store
    seeds = tuple(member_label(None, repeat) for repeat in range(2))
    made = make_ensemble(client, tmp_path, "repeats", classes=[0, 1], members=seeds, logged=seeds[:1])
    page = build_report(client, made.parent, tmp_path).read_text(encoding="utf-8")
    assert "The best trial trained 2 members, one per seed (search.repeats): seed0, seed1." in page
    assert "out-of-fold" not in page
    assert "No test predictions on the parent run for: seed1." in page
    # seed1's metrics are logged, its AUROC per hospital is not computable; the ROC leaves it out.
    expected = _expected_rows(made)[-1]
    assert f"<tr><td>seed1</td>{_cells([*expected[1:6], math.nan, math.nan, math.nan])}</tr>" in page
    roc = figures(page)["Ensemble ROC (test, positive class 1)"]
    assert [trace["name"].partition(" (AUC")[0] for trace in roc["data"]] == ["chance", "ensemble", "seed0"]
