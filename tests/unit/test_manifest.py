"""Split manifest: joint stratification, groups, k-fold, determinism, errors, cache, atomic writes."""
from __future__ import annotations

import hashlib
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from trial.errors import ConfigError, DataError
from trial.manifest import (
    FORMAT_VERSION,
    HoldoutSplit,
    KFoldSplit,
    SplitSpec,
    assign_splits,
    build_or_load_manifest,
    describe_manifest,
)

FAST = settings(max_examples=30, deadline=None)
HOLDOUT = HoldoutSplit(test=0.2, valid=0.2)
KFOLD = KFoldSplit(test=0.2, folds=3, fold=1)
EXTRA_COLUMNS = ["hos", "sex", "device"]


SPLIT_SPECS = [HOLDOUT, KFOLD, HoldoutSplit(test=0.1, valid=0.3), KFoldSplit(test=0.25, folds=2, fold=0)]


@st.composite
def label_frames(
    draw: st.DrawFn, *, grouped: bool, splits: list[SplitSpec] = SPLIT_SPECS
) -> tuple[pd.DataFrame, list[str], SplitSpec]:
    """2-4 classes (each big enough for every split), 1-3 extra stratify columns, optional groups."""
    split = draw(st.sampled_from(splits))
    n_classes = draw(st.integers(2, 4))
    # Grouped frames need more rows: a class must reach every split through whole groups.
    smallest = 4 * split.min_stratum_size if grouped else split.min_stratum_size
    sizes = draw(st.lists(st.integers(smallest, smallest + 40), min_size=n_classes, max_size=n_classes))
    extra = EXTRA_COLUMNS[: draw(st.integers(1, 3))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = np.repeat([f"c{k}" for k in range(n_classes)], sizes)
    frame = pd.DataFrame({"label": rng.permutation(labels)})
    for column in extra:
        n_values = int(rng.integers(2, 4))
        frame[column] = rng.choice([f"{column}{v}" for v in range(n_values)], size=len(frame), p=_skewed(n_values, rng))
    if grouped:
        # Groups of very different sizes: mostly 1-4 rows, a few of 8-15.
        group_sizes = []
        while sum(group_sizes) < len(frame):
            group_sizes.append(int(rng.integers(8, 16)) if rng.random() < 0.1 else int(rng.integers(1, 5)))
        ids = np.repeat(np.arange(len(group_sizes)), group_sizes)[: len(frame)]
        frame["patient"] = [f"p{g}" for g in rng.permutation(ids)]
    return frame, extra, split


def _skewed(n: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.uniform(0.2, 1.0, size=n)
    return weights / weights.sum()


def bin_column(out: pd.DataFrame) -> pd.Series:
    """The part each row was dealt into: test, valid, train, or its fold in k-fold mode."""
    if "fold" in out.columns:
        return out["fold"].map(lambda f: "test" if f < 0 else f"fold {f}")
    return out["split"]


def assign_quietly(
    frame: pd.DataFrame, stratify: list[str], split: SplitSpec, *, group: str | None = None, seed: int = 0
) -> pd.DataFrame:
    """assign_splits with the rare-strata warning silenced (random frames often have some)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return assign_splits(frame, target="label", stratify=stratify, group=group, split=split, seed=seed)


def small_frame(n_per_class: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3 * n_per_class
    return pd.DataFrame(
        {
            "label": np.repeat(["a", "b", "c"], n_per_class),
            "hos": rng.choice(["h1", "h2"], size=n),
            "patient": [f"p{i // 3}" for i in range(n)],
            "x": np.arange(n, dtype=float),
        }
    )


@FAST
@given(label_frames(grouped=False), st.integers(0, 1000))
def test_joint_shares_within_one_row_of_ideal(case, seed):
    frame, extra, split = case
    out = assign_quietly(frame, extra, split, seed=seed)
    fractions = dict(split.bins)
    parts = bin_column(out)
    for _, rows in out.groupby(["label", *extra]).groups.items():
        n = len(rows)
        if n < split.min_stratum_size:
            continue  # merged into its class's rare bucket
        counts = parts.loc[rows].value_counts()
        for part, fraction in fractions.items():
            assert abs(counts.get(part, 0) - n * fraction) < 1 + 1e-6, (part, n, counts.to_dict())


@FAST
@given(label_frames(grouped=True), st.integers(0, 1000))
def test_groups_never_span_two_splits_or_folds(case, seed):
    frame, extra, split = case
    try:
        out = assign_quietly(frame, extra, split, group="patient", seed=seed)
    except DataError as error:
        # Legal outcome for unlucky groupings, but it must say which column is at fault.
        assert "'patient'" in str(error)
        return
    assert (out.groupby("patient")["split"].nunique() == 1).all()
    if "fold" in out.columns:
        assert (out.groupby("patient")["fold"].nunique() == 1).all()
    for part in dict(split.bins):
        assert (bin_column(out) == part).any(), part


@FAST
@given(label_frames(grouped=False), st.integers(0, 1000))
def test_same_input_and_seed_give_identical_splits(case, seed):
    frame, extra, split = case
    first = assign_quietly(frame, extra, split, seed=seed)
    again = assign_quietly(frame.copy(), extra, split, seed=seed)
    pd.testing.assert_frame_equal(first, again)


def test_different_seeds_usually_differ():
    frame = small_frame()
    splits = {tuple(assign_quietly(frame, ["hos"], HOLDOUT, seed=seed)["split"]) for seed in range(6)}
    assert len(splits) >= 5


def test_output_keeps_rows_and_columns_and_adds_split():
    frame = small_frame().sample(frac=1.0, random_state=1)
    out = assign_quietly(frame, ["hos"], HOLDOUT)
    assert list(out.columns) == [*frame.columns, "split"]
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    assert set(out["split"]) == {"train", "valid", "test"}
    assert "split" not in frame.columns  # a copy, not the caller's frame


@FAST
@given(label_frames(grouped=False, splits=[s for s in SPLIT_SPECS if s.kfold]), st.integers(0, 1000))
def test_kfold_folds_partition_non_test_rows_and_test_is_fixed(case, seed):
    frame, extra, split = case
    outs = [
        assign_quietly(frame, extra, KFoldSplit(test=split.test, folds=split.folds, fold=f), seed=seed)
        for f in range(split.folds)
    ]
    test = outs[0]["split"] == "test"
    for f, out in enumerate(outs):
        pd.testing.assert_series_equal(out["split"] == "test", test)
        pd.testing.assert_series_equal(out["fold"], outs[0]["fold"])
        assert ((out["fold"] == -1) == test).all()
        assert ((out["split"] == "valid") == (out["fold"] == f)).all()
    valid_sets = [set(np.flatnonzero(out["split"] == "valid")) for out in outs]
    assert sum(len(s) for s in valid_sets) == int((~test).sum())  # disjoint ...
    assert set().union(*valid_sets) == set(np.flatnonzero(~test))  # ... and covering


@pytest.mark.parametrize("group", [None, "patient"])
def test_kfold_folds_stay_equal_in_size_over_many_strata(group):
    # 12 strata of uneven sizes: each stratum's rounding leftovers must not pile up in one
    # fold. 900 non-test rows make 180 per fold; whole groups of 1-2 rows may cost one more.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "label": rng.choice(["a", "b", "c", "d"], size=1000, p=[0.4, 0.3, 0.2, 0.1]),
            "hos": rng.choice(["h1", "h2", "h3"], size=1000),
            "patient": np.arange(1000) // 2 if group else np.arange(1000),
        }
    )
    out = assign_quietly(frame, ["hos"], KFoldSplit(test=0.1, folds=5, fold=0), group=group)
    sizes = out["fold"].value_counts().sort_index()
    assert abs(sizes[-1] - 100) <= 2
    folds = sizes[sizes.index >= 0]
    slack = 1 if group is None else 2
    assert folds.max() - folds.min() <= slack and (abs(folds - 180) <= slack).all(), sizes.tolist()


def test_rare_strata_warn_and_are_merged_per_class():
    frame = small_frame(n_per_class=40)
    frame.loc[[0, 1], "hos"] = "h9"  # class a x h9: 2 rows, too few for 3 splits
    with pytest.warns(UserWarning, match=r"merged into a rare bucket per 'label': \(a, h9\): 2$"):
        out = assign_splits(frame, target="label", stratify=["hos"], group=None, split=HOLDOUT, seed=0)
    # The class still keeps its share in every split: merging stays within class a.
    per_split = out[out["label"] == "a"]["split"].value_counts()
    for name, fraction in dict(HOLDOUT.bins).items():
        assert abs(per_split[name] - 40 * fraction) < 1 + 1e-6


def test_target_class_too_rare_for_every_split_is_a_data_error():
    # 'zz': 4 rows, where test=0.2 needs 5 for one test row; 7: 3 rows, named first as the rarest.
    frame = pd.DataFrame({"label": ["a"] * 40 + ["zz"] * 4 + [7] * 3, "hos": "h1"})
    with pytest.raises(DataError) as error:
        assign_splits(frame, target="label", stratify=["hos"], group=None, split=HOLDOUT, seed=0)
    assert str(error.value) == (
        "target 'label': class 7 (3 rows), 'zz' (4 rows) too rare; with test=0.2, valid=0.2 every split "
        "(test, valid, train) gets a row of a class only from 5 rows up; drop or merge the class, "
        "or use larger split fractions"
    )
    # 5 rows are enough for test=0.2 ...
    assign_quietly(pd.DataFrame({"label": ["a"] * 40 + ["zz"] * 5, "hos": "h1"}), ["hos"], HOLDOUT)
    # ... and k-fold needs a row per fold: folds=3 of test=0.25 leaves 0.25 each, 4 rows.
    kfold = KFoldSplit(test=0.25, folds=3, fold=0)
    assert kfold.min_stratum_size == 4 and kfold.describe() == "test=0.25, folds=3"
    frame = pd.DataFrame({"label": ["a"] * 40 + ["b"] * 3})
    with pytest.raises(DataError, match=r"class 'b' \(3 rows\) too rare; with test=0.25, folds=3 every split \(test, fold 0, fold 1, fold 2\) gets a row of a class only from 4 rows up"):
        assign_splits(frame, target="label", stratify=[], group=None, split=kfold, seed=0)


@pytest.mark.parametrize(("n_rare", "end"), [(10, "(a, r9): 1"), (11, "(a, r9): 1 and 1 more"), (20, "(a, r9): 1 and 10 more")])
def test_more_than_ten_rare_strata_are_counted_not_listed(n_rare, end):
    hos = ["h0"] * (60 - n_rare) + [f"r{i}" for i in range(n_rare)] + ["h0"] * 60
    frame = pd.DataFrame({"label": ["a"] * 60 + ["b"] * 60, "hos": hos})
    with pytest.warns(UserWarning) as record:
        assign_splits(frame, target="label", stratify=["hos"], group=None, split=HOLDOUT, seed=0)
    message = str(record[0].message)
    assert message.startswith(
        f"{n_rare} strata of (label, hos) have fewer than 5 rows, too few for every split to get one; "
        "merged into a rare bucket per 'label': (a, r0): 1, (a, r1): 1, "
    )
    assert message.endswith(end)


def test_rare_classes_of_one_size_are_named_in_the_order_the_labels_show_them():
    labels = ["zz"] * 4 + ["a"] * 40 + ["mm"] * 4 + [f"c{i:02d}" for i in range(20) for _ in range(4)]
    with pytest.raises(DataError) as error:
        assign_splits(pd.DataFrame({"label": labels}), target="label", stratify=[], group=None, split=HOLDOUT, seed=0)
    rare = ", ".join(["'zz' (4 rows)", "'mm' (4 rows)", *(f"'c{i:02d}' (4 rows)" for i in range(20))])
    assert str(error.value).startswith(f"target 'label': class {rare} too rare;")


def test_missing_column_lists_available_columns():
    with pytest.raises(DataError, match=r"^labels: column 'ward' not found; available columns: label, hos, patient, x$"):
        assign_splits(small_frame(), target="label", stratify=["ward"], group=None, split=HOLDOUT, seed=0)
    with pytest.raises(DataError, match="'pid' not found"):
        assign_splits(small_frame(), target="label", stratify=[], group="pid", split=HOLDOUT, seed=0)


@pytest.mark.parametrize("column", ["label", "hos", "patient"])
def test_nan_in_used_column_names_column_and_count(column):
    frame = small_frame()
    frame.loc[[2, 5, 7], column] = np.nan
    expected = (
        rf"^labels column '{column}': 3 missing \(NaN\) value\(s\) of 90; "
        "target, stratify and group columns must be filled in every row$"
    )
    with pytest.raises(DataError, match=expected):
        assign_splits(frame, target="label", stratify=["hos"], group="patient", split=HOLDOUT, seed=0)


def test_the_last_class_missing_the_last_split_is_named_too():
    # Class z (seen last) lives in three groups that also hold class b; a bigger group of b
    # fills b's train share first, so all three go to test and valid and z never reaches train.
    frame = pd.DataFrame(
        {
            "label": ["a"] * 50 + ["b"] * 60 + (["b"] * 10 + ["z"] * 2) * 2 + ["b"] * 10 + ["z"],
            "patient": [f"s{i}" for i in range(50)] + ["g0"] * 60 + ["g1"] * 12 + ["g2"] * 12 + ["g3"] * 11,
        }
    )
    with pytest.raises(DataError, match=r"^group column 'patient': 'label' class 'z' \(5 rows\) reaches no row of train "):
        assign_splits(frame, target="label", stratify=[], group="patient", split=HOLDOUT, seed=0)


@pytest.mark.parametrize("column", ["split", "fold"])
def test_reserved_output_column_is_refused(column):
    frame = small_frame().assign(**{column: 1})
    with pytest.raises(DataError, match=rf"^labels: column '{column}' is reserved for the manifest's output; rename it in the labels$"):
        assign_splits(frame, target="label", stratify=[], group=None, split=HOLDOUT, seed=0)


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (small_frame(), dict(stratify="hos"), r"^stratify: expected a list of column names, got the string 'hos'$"),
        (small_frame().iloc[:0], dict(stratify=[]), r"^labels: no rows; the split needs at least one row per split$"),
        (small_frame(), dict(stratify=[], seed=-1), r"^seed: expected a non-negative integer, got -1$"),
        (small_frame(), dict(stratify=[], seed=True), r"^seed: expected a non-negative integer, got True$"),
    ],
)
def test_bad_arguments_are_named(frame, kwargs, message):
    error = ConfigError if "seed" in kwargs else DataError
    with pytest.raises(error, match=message):
        assign_splits(frame, **{"target": "label", "group": None, "split": HOLDOUT, "seed": 0, **kwargs})


def test_too_few_groups_is_a_data_error_naming_the_group_column():
    frame = small_frame().assign(patient=lambda f: np.where(f.index % 2, "p1", "p2"))
    with pytest.raises(DataError) as error:
        assign_splits(frame, target="label", stratify=[], group="patient", split=HOLDOUT, seed=0)
    assert str(error.value) == (
        "group column 'patient': 2 group(s), but a group lives in one split and test=0.2, valid=0.2 "
        "needs at least 3 (test, valid, train)"
    )
    # Three groups can be enough: each class in groups of 6, 6 and 18 of its 30 rows.
    frame["patient"] = np.tile(np.repeat([0, 1, 2], [6, 6, 18]), 3)
    out = assign_splits(frame, target="label", stratify=[], group="patient", split=HOLDOUT, seed=0)
    first, second, large = out.groupby("patient")["split"].first()
    assert {first, second} == {"test", "valid"} and large == "train"


def test_class_living_in_one_group_is_a_data_error():
    frame = small_frame().iloc[::-1]  # classes named in the order the labels first show them
    frame.loc[frame["label"] == "c", "patient"] = "p-c"
    frame.loc[frame["label"] == "b", "patient"] = np.where(frame.index[frame["label"] == "b"] % 2, "p-b1", "p-b2")
    with pytest.raises(DataError) as error:
        assign_splits(frame, target="label", stratify=[], group="patient", split=HOLDOUT, seed=0)
    assert str(error.value) == (
        "group column 'patient': target 'label' class 'c' in 1 group(s), 'b' in 2 group(s); a group lives in "
        "one split, so every class needs rows in at least 3 groups to reach every split with test=0.2, valid=0.2"
    )


def test_integer_classes_are_named_as_written():
    frame = pd.DataFrame({"label": np.array([0] * 40 + [3] * 2, dtype=np.int64)})
    with pytest.raises(DataError, match=r"^target 'label': class 3 \(2 rows\) too rare"):
        assign_splits(frame, target="label", stratify=[], group=None, split=HOLDOUT, seed=0)


def test_a_class_whose_groups_are_too_uneven_is_a_data_error():
    # Class c lives in three groups, two of them large ones with 30 rows of class a: those two
    # both belong in train, so c reaches only one of valid and test.
    frame = pd.DataFrame(
        {
            "label": ["a"] * 30 + ["c"] * 2 + ["a"] * 30 + ["c"] * 2 + ["c"] + ["a"] * 40 + ["b"] * 50,
            "patient": ["g1"] * 32 + ["g2"] * 32 + ["g3"] + [f"p{i}" for i in range(90)],
        }
    )
    with pytest.raises(DataError, match=r"^group column 'patient': 'label' class 'c' \(5 rows\) reaches no row of (test|valid|train) with test=0.2, valid=0.2; its groups are too few or too uneven to reach every split$"):
        assign_splits(frame, target="label", stratify=[], group="patient", split=HOLDOUT, seed=0)


def test_groups_of_very_different_sizes_keep_shares_roughly():
    rng = np.random.default_rng(3)
    sizes = [40, 25, 12] + [int(s) for s in rng.integers(1, 4, size=150)]
    patient = np.repeat(np.arange(len(sizes)), sizes)
    frame = pd.DataFrame({"label": rng.choice(["a", "b"], size=len(patient)), "patient": patient})
    out = assign_splits(frame, target="label", stratify=[], group="patient", split=HOLDOUT, seed=0)
    assert (out.groupby("patient")["split"].nunique() == 1).all()
    shares = out["split"].value_counts(normalize=True)
    for name, fraction in dict(HOLDOUT.bins).items():
        assert abs(shares[name] - fraction) < 0.03
    # The biggest groups go to train, where they fit.
    assert set(out.loc[out["patient"] < 3, "split"]) == {"train"}


@pytest.mark.parametrize(
    "model, kwargs, loc, message",
    [
        (HoldoutSplit, {"test": 0.0, "valid": 0.2}, ("test",), "greater than 0"),
        (HoldoutSplit, {"test": 0.2, "valid": 1.2}, ("valid",), "less than 1"),
        (HoldoutSplit, {"test": 0.5, "valid": 0.5}, (), "valid + test must be < 1, got 0.5 + 0.5"),
        (HoldoutSplit, {"test": 0.2, "folds": 5}, ("folds",), "Extra inputs are not permitted"),
        (KFoldSplit, {"test": 0.2}, ("folds",), "Field required"),
        (KFoldSplit, {"test": 1.0, "folds": 2}, ("test",), "less than 1"),
        (KFoldSplit, {"test": 0.2, "folds": 1}, ("folds",), "greater than or equal to 2"),
        (KFoldSplit, {"test": 0.2, "folds": 5, "fold": 5}, (), "fold=5 must be < folds=5"),
        (KFoldSplit, {"test": 0.2, "folds": 2.0}, ("folds",), "valid integer"),
    ],
)
def test_a_split_is_validated_where_it_is_built(model, kwargs, loc, message):
    # One validation system: the sweep config's data.split section is this model, and
    # trial/config.py turns these errors into its one-line messages.
    with pytest.raises(ValidationError) as error:
        model(**kwargs)
    first = error.value.errors()[0]
    assert first["loc"] == loc and message in first["msg"]


def test_the_manifest_hash_covers_one_layout_for_both_split_kinds():
    assert HOLDOUT.hash_fields() == {"test": 0.2, "valid": 0.2, "folds": None, "fold": None}
    assert KFOLD.hash_fields() == {"test": 0.2, "valid": None, "folds": 3, "fold": 1}
    assert HOLDOUT.kfold is False and KFOLD.kfold is True


def test_describe_reports_counts_shares_folds_and_leakage():
    out = assign_quietly(small_frame(), ["hos"], KFOLD, group="patient")
    text = describe_manifest(out, stratify=["label", "hos"], group="patient")
    n_test = int((out["split"] == "test").sum())
    assert re.search(rf"^  test +{n_test} +20\.0%$", text, re.MULTILINE)
    assert "label x hos: count (share within split)" in text
    assert "rows per fold" in text and "fold 2" in text
    assert "groups in more than one split: 0" in text
    assert "groups in more than one fold: 0" in text


def _cells(text: str, title: str, columns: tuple = ("train", "valid", "test", "all")) -> list[list[tuple[int, float]]]:
    """The (count, share %) cells of each value row of the table under `title`, in order."""
    lines = text.splitlines()
    start = lines.index(f"{title}: count (share within split)")
    assert lines[start + 1].split() == list(columns)
    rows = []
    for line in lines[start + 3 :]:
        cells = re.findall(r"(\d+) \((\d+\.\d)%\)", line)
        if not cells:
            break
        rows.append([(int(n), float(share)) for n, share in cells])
    return rows


def test_describe_by_hand():
    frame = pd.DataFrame(
        {
            "label": list("aaaaaabbbb"),
            "hos": ["h1", "h1", "h2", "h2", "h1", "h2", "h1", "h2", "h2", "h1"],
            "patient": ["p1", "p1", "p2", "p3", "p1", "p4", "p5", "p6", "p7", "p5"],
            "split": ["train", "train", "train", "test", "valid", "train", "train", "test", "valid", "train"],
            "fold": [0, 0, 1, -1, 1, 0, 1, -1, 0, 1],
            "x": range(10),  # one more column: rows are never identical
        }
    ).iloc[::-1]  # 'b' first: the tables still list values sorted
    text = describe_manifest(frame, stratify=["label", "hos"], group="patient")
    lines = text.splitlines()
    assert lines[:7] == [
        "rows: 10",
        "  train         6   60.0%",
        "  valid         2   20.0%",
        "  test          2   20.0%",
        "rows per fold (test rows excluded):",
        "  fold 0          4",
        "  fold 1          4",
    ]
    # Shares are within each split's column (and over all rows in the last).
    assert _cells(text, "label") == [
        [(4, 66.7), (1, 50.0), (1, 50.0), (6, 60.0)],
        [(2, 33.3), (1, 50.0), (1, 50.0), (4, 40.0)],
    ]
    assert _cells(text, "hos") == [
        [(4, 66.7), (1, 50.0), (0, 0.0), (5, 50.0)],
        [(2, 33.3), (1, 50.0), (2, 100.0), (5, 50.0)],
    ]
    assert _cells(text, "label x hos") == [
        [(2, 33.3), (1, 50.0), (0, 0.0), (3, 30.0)],
        [(2, 33.3), (0, 0.0), (1, 50.0), (3, 30.0)],
        [(2, 33.3), (0, 0.0), (0, 0.0), (2, 20.0)],
        [(0, 0.0), (1, 50.0), (1, 50.0), (2, 20.0)],
    ]
    # p1 is in train and valid, and in folds 0 and 1.
    assert lines[-3:] == [
        "groups (patient): 7 (train 4, valid 2, test 2)",
        "  groups in more than one split: 1",
        "  groups in more than one fold: 1",
    ]


def test_describe_leaves_out_a_split_without_rows_and_a_joint_table_of_one_column():
    frame = pd.DataFrame({"label": ["a", "b", "a", "b"], "split": ["train", "train", "test", "train"]})
    text = describe_manifest(frame, stratify=["label"], group=None)
    assert text.splitlines()[:3] == ["rows: 4", "  train         3   75.0%", "  test          1   25.0%"]
    assert "valid" not in text and text.count("label: count") == 1 and "x" not in text
    assert _cells(text, "label", ["train", "test", "all"]) == [[(1, 33.3), (1, 100.0), (2, 50.0)], [(2, 66.7), (0, 0.0), (2, 50.0)]]


def test_describe_needs_the_manifest_columns():
    frame = pd.DataFrame({"label": ["a"], "split": ["train"]})
    with pytest.raises(DataError, match=r"^manifest: column 'hos', 'patient' not found; available columns: label, split$"):
        describe_manifest(frame, stratify=["label", "hos"], group="patient")


# --- cache -------------------------------------------------------------------------------


def build(frame: pd.DataFrame, cache_dir, split: SplitSpec = HOLDOUT, seed: int = 0):
    return build_or_load_manifest(
        frame, target="label", stratify=["hos"], group="patient", split=split, seed=seed, cache_dir=cache_dir
    )


def test_manifest_is_reused_until_labels_or_settings_change(tmp_path):
    frame = small_frame()
    first = build(frame, tmp_path)
    assert first.reused is False and first.path.exists()
    assert (first.frame.groupby("patient")["split"].nunique() == 1).all()
    assert pd.read_csv(first.path).columns.tolist() == [*frame.columns, "split"]
    assert first.path.name == f"manifest-{first.content_hash[:16]}.csv"
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta == {
        "format_version": 1,
        "target": "label",
        "stratify": ["hos"],
        "group": "patient",
        "split": {"test": 0.2, "valid": 0.2, "folds": None, "fold": None},
        "seed": 0,
        "hash": first.content_hash,
        "n_rows": len(frame),
    }
    assert re.fullmatch(r"[0-9a-f]{64}", first.content_hash)
    assert pd.read_csv(first.path)["split"].tolist() == first.frame["split"].tolist()

    again = build(frame, tmp_path)
    assert again.reused is True and (again.path, again.content_hash) == (first.path, first.content_hash)
    pd.testing.assert_frame_equal(again.frame, first.frame)
    # The same labels under another index (rows kept from a bigger table) are the same labels.
    assert build(frame.set_axis(range(100, 100 + len(frame))), tmp_path).reused

    changed = frame.copy()
    changed.loc[0, "hos"] = "h2" if changed.loc[0, "hos"] == "h1" else "h1"
    assert not build(changed, tmp_path).reused
    assert not build(frame, tmp_path, split=HoldoutSplit(test=0.2, valid=0.3)).reused
    assert not build(frame, tmp_path, seed=1).reused
    assert build(frame, tmp_path).reused
    # Every setting is part of the key, not only the split and the seed.
    others = [
        dict(target="hos", stratify=["label"], group="patient"),
        dict(target="label", stratify=[], group="patient"),
        dict(target="label", stratify=["hos"], group=None),
    ]
    for settings in others:
        other = build_or_load_manifest(frame, split=HOLDOUT, seed=0, cache_dir=tmp_path, **settings)
        assert not other.reused and other.content_hash != first.content_hash


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace(",train\n", ",bogus\n", 1),  # a split name that is not one
        lambda text: "\n".join(text.splitlines()[:-1]) + "\n",  # a row short
        lambda text: text.replace("split", "parts", 1),  # no split column
    ],
)
def test_a_damaged_cached_manifest_is_rebuilt(tmp_path, damage):
    first = build(small_frame(), tmp_path)
    first.path.write_text(damage(first.path.read_text()))
    again = build(small_frame(), tmp_path)
    assert not again.reused
    pd.testing.assert_frame_equal(again.frame, first.frame)
    assert build(small_frame(), tmp_path).reused  # the rebuilt cache is whole again


def test_a_sidecar_for_other_labels_is_not_trusted(tmp_path):
    first = build(small_frame(), tmp_path)
    sidecar = first.path.with_suffix(".json")
    for key, value in [("hash", "0" * 64), ("n_rows", 91)]:
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, key: value}))
        assert not build(small_frame(), tmp_path).reused
    sidecar.write_text("[1, 2]")
    assert not build(small_frame(), tmp_path).reused


def test_the_cache_key_follows_the_documented_recipe(tmp_path):
    # The same on every machine and every version with this FORMAT_VERSION: a change to the
    # recipe must bump FORMAT_VERSION, or old caches would be read for new splits.
    frame = small_frame()
    manifest = build(frame, tmp_path / "a" / "b", seed=np.int64(3))  # folders made as needed
    settings = {
        "format_version": FORMAT_VERSION,
        "target": "label",
        "stratify": ["hos"],
        "group": "patient",
        "split": {"test": 0.2, "valid": 0.2, "folds": None, "fold": None},
        "seed": 3,
    }
    csv = frame.to_csv(index=False, lineterminator="\n")
    expected = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + b"\0" + csv.encode()).hexdigest()
    assert manifest.content_hash == expected
    assert json.loads(manifest.path.with_suffix(".json").read_text())["seed"] == 3


def test_the_cache_is_written_through_temp_files_beside_it(tmp_path, monkeypatch):
    # Written beside the final name, so that os.replace is atomic (same folder, same disk).
    seen = []
    real_to_csv = pd.DataFrame.to_csv

    def watching(self, buf=None, *args, **kwargs):
        if buf is not None:
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real_to_csv(self, buf, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", watching)
    manifest = build(small_frame(), tmp_path)
    [names] = seen
    assert len(names) == 1 and re.fullmatch(rf"\.{re.escape(manifest.path.name)}\..+\.tmp", names[0])


def test_kfold_manifest_cache_keeps_fold_column(tmp_path):
    first = build(small_frame(), tmp_path, split=KFOLD)
    again = build(small_frame(), tmp_path, split=KFOLD)
    assert again.reused
    pd.testing.assert_frame_equal(again.frame, first.frame)
    assert again.frame["fold"].dtype == np.int64


def test_manifest_without_sidecar_is_rebuilt(tmp_path):
    first = build(small_frame(), tmp_path)
    first.path.with_suffix(".json").unlink()  # as after a crash between the two writes
    assert not build(small_frame(), tmp_path).reused


def test_failed_write_leaves_no_partial_manifest(tmp_path, monkeypatch):
    real_to_csv = pd.DataFrame.to_csv

    def crash_midway(self, buf=None, *args, **kwargs):
        if buf is None:  # hashing the labels: let it through
            return real_to_csv(self, buf, *args, **kwargs)
        buf.write("label,hos,patient,x,split\na,h1,")  # part of a row, then the disk "fails"
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        build(small_frame(), tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    manifest = build(small_frame(), tmp_path)
    assert not manifest.reused
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".csv", ".json"]


def test_unreadable_sidecar_is_rebuilt_and_numpy_seed_hashes_like_int(tmp_path):
    first = build(small_frame(), tmp_path)
    first.path.with_suffix(".json").write_text("{not json")
    rebuilt = build(small_frame(), tmp_path)
    assert not rebuilt.reused and rebuilt.content_hash == first.content_hash
    assert build(small_frame(), tmp_path, seed=np.int64(0)).reused


def test_describe_shares_are_within_each_split():
    frame = pd.DataFrame({"label": ["a"] * 60 + ["b"] * 40, "hos": ["h1", "h2"] * 50})
    out = assign_splits(frame, target="label", stratify=["hos"], group=None, split=HOLDOUT, seed=0)
    text = describe_manifest(out, stratify=["label"], group=None)
    assert re.search(r"^  a +36 \(60\.0%\) +12 \(60\.0%\) +12 \(60\.0%\) +60 \(60\.0%\)$", text, re.MULTILINE)
    assert "groups" not in text and "fold" not in text
