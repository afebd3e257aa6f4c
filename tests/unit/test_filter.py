"""data.filter: a pandas query over the labels CSV, applied before every check, split and pack.

Real labels and .npy files on disk; bad filters go through the CLI (`trial manifest` and
`trial run`) and must be one line on stderr, exit 2, nothing written, before Ray starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.team_data import team_data
from tests.unit.test_bad_input import assert_nothing_half_written
from trial import ray_backend
from trial.cli import main
from trial.config import load_config
from trial.data import prepare_data
from trial.manifest import HoldoutSplit, KFoldSplit, build_or_load_manifest, describe_filter

ROWS = 240
HOSPITALS = ("h0", "h1", "westbrook")
FILTER = "hos != 'westbrook' and age >= 18"


def columns(index: int) -> dict[str, object]:
    """Both classes in every hospital; ages 10-69; a column name with a space."""
    return {
        "label": int(index % 4 == 0),
        "hos": HOSPITALS[(index // 2) % 3],
        "age": 10 + (index * 7) % 60,
        "blood type": "B" if index % 5 == 0 else "A",
        "patient_id": index,
    }


@pytest.fixture
def labels_csv(tmp_path: Path) -> Path:
    return team_data(tmp_path / "data", rows=ROWS, shape=(1, 16), columns=columns)


def write_config(tmp_path: Path, labels_csv: Path, **data: object) -> Path:
    config = {
        "name": "filtered",
        "data": {"labels": str(labels_csv), "stratify": ["label", "hos"], "group": "patient_id", **data},
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 1, "batch_size": 16, "channels": 4}},
        "search": {"space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "storage": str(tmp_path / "runs"),
    }
    path = tmp_path / "filtered.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def expected_rows(labels_csv: Path, query: str = FILTER) -> pd.DataFrame:
    return pd.read_csv(labels_csv).query(query).reset_index(drop=True)


def manifests(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs" / "cache").glob("manifest-*.csv"))


# -- the rows kept -----------------------------------------------------------------------


def test_the_manifest_and_the_packed_array_hold_only_the_kept_rows(tmp_path, labels_csv):
    kept = expected_rows(labels_csv)
    assert 0 < len(kept) < ROWS
    # Dropped rows' files are never opened: westbrook's are damaged, a full run would refuse them.
    for path in pd.read_csv(labels_csv).query("hos == 'westbrook'")["path"]:
        (labels_csv.parent / path).write_bytes(b"\x00 not an array")

    prepared = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=FILTER)))

    frame = prepared.frame()
    pd.testing.assert_frame_equal(frame.drop(columns="split"), kept)
    assert len(np.load(prepared.arrays, mmap_mode="r")) == len(kept)
    first = np.load(labels_csv.parent / kept.loc[0, "path"])
    np.testing.assert_array_equal(np.load(prepared.arrays, mmap_mode="r")[0], first)
    assert prepared.classes == (0, 1)


def test_backticks_name_a_column_with_spaces_and_quoted_at_signs_are_text(tmp_path, labels_csv):
    query = "`blood type` == 'A' or hos == 'a@b'"
    prepared = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=query)))
    assert prepared.frame()["blood type"].eq("A").all()
    assert len(prepared.frame()) == len(expected_rows(labels_csv, query))


def test_a_filter_that_keeps_every_row_still_names_its_own_manifest(tmp_path, labels_csv):
    unfiltered = prepare_data(load_config(write_config(tmp_path, labels_csv)))
    everything = prepare_data(load_config(write_config(tmp_path, labels_csv, filter="age >= 0")))
    pd.testing.assert_frame_equal(everything.frame(), unfiltered.frame())
    assert everything.manifest_hash != unfiltered.manifest_hash


# -- the manifest's content hash -----------------------------------------------------------


PINNED_FRAME = pd.DataFrame(
    {"label": [i % 2 for i in range(24)], "hos": [f"h{i % 3}" for i in range(24)], "age": [20 + i for i in range(24)]}
)


@pytest.mark.parametrize(
    "split, pinned",
    [
        # Computed by the manifest code from before data.filter existed: caches built then stay valid.
        (HoldoutSplit(test=0.25, valid=0.25), "47e9d8b5d998c001f647dcb23abb9417dae2e8957135b1b620f129d83fca156c"),
        (KFoldSplit(test=0.25, folds=3), "c0cf6b429b3e2384c1b288318f7610042324bad473ea6a7763da75c13404117d"),
    ],
)
def test_without_a_filter_the_hash_is_what_it_was_before_filters(tmp_path, split, pinned):
    kwargs = dict(target="label", stratify=["label", "hos"], group=None, split=split, seed=7, cache_dir=tmp_path)
    manifest = build_or_load_manifest(PINNED_FRAME, **kwargs)
    assert manifest.content_hash == pinned
    assert "filter" not in json.loads(manifest.path.with_suffix(".json").read_text())
    assert build_or_load_manifest(PINNED_FRAME, row_filter=None, **kwargs).content_hash == pinned


def test_the_filter_text_is_part_of_the_hash_and_the_sidecar(tmp_path):
    kwargs = dict(target="label", stratify=[], group=None, split=HoldoutSplit(), seed=0, cache_dir=tmp_path)
    plain = build_or_load_manifest(PINNED_FRAME, **kwargs)
    filtered = build_or_load_manifest(PINNED_FRAME, row_filter="age >= 0", **kwargs)
    # Same rows, other filter text: another manifest, so no sweep reads a cache it did not filter.
    assert filtered.content_hash != plain.content_hash and not filtered.reused
    assert build_or_load_manifest(PINNED_FRAME, row_filter="age > -1", **kwargs).content_hash != filtered.content_hash
    assert json.loads(filtered.path.with_suffix(".json").read_text())["filter"] == "age >= 0"
    assert build_or_load_manifest(PINNED_FRAME, row_filter="age >= 0", **kwargs).reused


def test_a_filtered_sweep_reuses_its_manifest_and_other_filters_get_their_own(tmp_path, labels_csv):
    first = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=FILTER)))
    again = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=FILTER)))
    other = prepare_data(load_config(write_config(tmp_path, labels_csv, filter="age >= 18")))
    assert again.manifest_hash == first.manifest_hash
    assert other.manifest_hash != first.manifest_hash
    assert len(manifests(tmp_path)) == 2


# -- `trial manifest` ----------------------------------------------------------------------


def test_trial_manifest_shows_rows_kept_and_dropped_per_stratify_value(tmp_path, labels_csv, capsys):
    code = main(["manifest", "--config", str(write_config(tmp_path, labels_csv, filter=FILTER))])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert Path(out[0]).is_file()  # the manifest's path stays the first line
    labels, kept = pd.read_csv(labels_csv), expected_rows(labels_csv)
    start = out.index(f"filter: {FILTER}")
    assert out[start + 1] == f"  rows kept {len(kept)}, dropped {ROWS - len(kept)} of {ROWS}"
    table = [line.split() for line in out[start + 2 : start + 8]]
    assert table[0] == ["column=value", "kept", "dropped"]
    expected = [
        [f"{column}={value}", str(n_kept), str(n_all - n_kept)]
        for column in ("label", "hos")
        for value, n_all in labels[column].value_counts().sort_index().items()
        for n_kept in [int((kept[column] == value).sum())]
    ]
    assert table[1:] == expected
    assert ["hos=westbrook", "0", str((labels["hos"] == "westbrook").sum())] in table
    assert out[start + 8] == f"rows: {len(kept)}"  # then the split's own description


def test_the_filter_table_counts_missing_values_as_nan():
    before = pd.DataFrame({"label": [0, 1, 0, 1, 1], "hos": ["a", None, "b", "a", None]})
    text = describe_filter(before, before[before["hos"].notna()], query="hos == hos", columns=["label", "hos", "label"])
    assert text.splitlines() == [
        "filter: hos == hos",
        "  rows kept 3, dropped 2 of 5",
        "  column=value     kept  dropped",
        "  label=0             2        0",
        "  label=1             1        2",
        "  hos=a               2        0",
        "  hos=b               1        0",
        "  hos=nan             0        2",
    ]


def test_trial_manifest_without_a_filter_shows_no_filter_table(tmp_path, labels_csv, capsys):
    assert main(["manifest", "--config", str(write_config(tmp_path, labels_csv))]) == 0
    out = capsys.readouterr().out
    assert "filter:" not in out and "column=value" not in out


# -- bad filters: one line, exit 2, nothing written, no Ray ---------------------------------


BAD_FILTERS = [
    ("age >", "data.filter: not a valid pandas query: 'age >' (invalid syntax)"),
    (
        "site == 'h0'",
        "data.filter: column 'site' not found; columns: path, label, hos, age, blood type, patient_id",
    ),
    ("`blood group` == 'A'", "data.filter: column 'blood group' not found; columns: path, label, hos, age"),
    ("age + 1", "data.filter: expected true or false per row (a comparison such as \"age >= 18\"), got int64 values"),
    ("True", "data.filter: expected true or false per row (a comparison such as \"age >= 18\"), got a single bool"),
    ("hos > 5", "data.filter: cannot evaluate 'hos > 5': Invalid comparison"),
    ("age > 1000", f"data.filter: keeps none of the {ROWS} rows, got 'age > 1000'"),
    ("label == 0", "data.filter: leaves no rows of class 1 (label), got 'label == 0'"),
    ("@limit < age", "data.filter: '@' refers to a Python variable and a filter has none"),
    ("age > @limit", "data.filter: '@' refers to a Python variable"),
    ("", "data.filter: expected a pandas query over the labels CSV's columns"),
    ("   ", "data.filter: expected a pandas query over the labels CSV's columns (e.g. \"age >= 18\"), got '   '"),
]


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setattr(ray_backend, "connect_ray", lambda *a, **k: pytest.fail("Ray must not start"))


@pytest.mark.parametrize("command", ["manifest", "run"])
@pytest.mark.parametrize("query, expected", BAD_FILTERS, ids=[query or "empty" for query, _ in BAD_FILTERS])
def test_a_bad_filter_is_one_line_exit_2_before_anything_is_written(
    tmp_path, labels_csv, capsys, no_ray, command, query, expected
):
    code = main([command, "--config", str(write_config(tmp_path, labels_csv, filter=query))])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"trial: error: {expected}"), err
    assert "Traceback" not in captured.err and captured.out == ""
    assert manifests(tmp_path) == []
    assert_nothing_half_written(tmp_path)


def test_a_class_listed_in_data_classes_must_keep_rows_too(tmp_path, labels_csv, capsys, no_ray):
    path = write_config(tmp_path, labels_csv, filter="age >= 18", classes=[0, 1, 2])
    code = main(["run", "--config", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        "trial: error: data.filter: leaves no rows of class 2 (label), got 'age >= 18'; "
        "every class of the target needs rows to split and train on"
    ]
    assert_nothing_half_written(tmp_path)


def test_a_filter_that_is_not_text_is_a_config_error(tmp_path, labels_csv, capsys):
    code = main(["manifest", "--config", str(write_config(tmp_path, labels_csv, filter=18))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("trial: error: data.filter: "), err


# -- with the subsample and k-fold ---------------------------------------------------------


def test_the_subsample_is_drawn_from_the_kept_rows(tmp_path, labels_csv):
    kept = expected_rows(labels_csv)
    prepared = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=FILTER, subsample=0.5)))
    sample = prepared.frame()
    assert set(sample["patient_id"]) < set(kept["patient_id"])
    assert len(sample) < len(kept)
    # The full (filtered) run's manifest was checked and cached on the way, as --debug does.
    full = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=FILTER)))
    pd.testing.assert_frame_equal(full.frame().drop(columns="split"), kept)
    assert full.manifest_csv in manifests(tmp_path) and len(manifests(tmp_path)) == 2


def test_debug_mode_checks_and_samples_only_the_kept_rows(tmp_path, labels_csv):
    config = load_config(write_config(tmp_path, labels_csv, filter=FILTER), ["debug=true"])
    sample = prepare_data(config).frame()
    assert sample["hos"].isin(["h0", "h1"]).all() and (sample["age"] >= 18).all()
    assert set(sample["label"]) == {0, 1}


def test_k_fold_splits_only_the_kept_rows(tmp_path, labels_csv):
    kept = expected_rows(labels_csv)
    prepared = prepare_data(load_config(write_config(tmp_path, labels_csv, filter=FILTER, split={"folds": 3})))
    frame = prepared.frame()
    pd.testing.assert_frame_equal(frame.drop(columns=["split", "fold"]), kept)
    assert sorted(frame.loc[frame["fold"] >= 0, "fold"].unique()) == [0, 1, 2]
    assert (frame.loc[frame["split"] == "valid", "fold"] == 0).all()
