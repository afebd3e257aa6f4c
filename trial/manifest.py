"""The split manifest: which row of the labels is train, valid or test (and which fold).

Splits are stratified on the joint combination of the target and the `stratify` columns
(label x hospital keeps its share in every split) and, with a `group` column, never cut a
group (a patient) across two splits. The manifest is content-hashed and cached, so every
trial of a sweep, and every later sweep over the same labels and settings, reads the same
split.

The assignment is one greedy pass over the groups, largest first: each group goes to the
split (or fold) whose per-stratum counts are furthest below their targets, which is the
choice that least increases the squared distance to the ideal counts. Without a group
column every row is its own group, and each stratum then ends within one row of its ideal
count in every split.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trial.errors import ConfigError, DataError
from trial.runs import SPLITS

# Bumped whenever the assignment or the file layout changes, so old caches are not reused.
FORMAT_VERSION = 1
_RARE = "<rare>"
# Float slack when comparing deficits, so exact ties are not decided by rounding noise.
_TIE = 1e-9


class _Split(BaseModel):
    # strict: a string never turns into a number, 1.0 never into an int (the sweep config's rules).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    test: float = Field(0.15, gt=0, lt=1)
    """Fraction of rows in the test split."""

    @property
    def kfold(self) -> bool:
        """True in k-fold mode."""
        return isinstance(self, KFoldSplit)

    @property
    def min_stratum_size(self) -> int:
        """The fewest rows whose proportional share gives every part at least one row."""
        smallest = min(fraction for _, fraction in self.bins)
        return max(len(self.bins), math.ceil(1.0 / smallest - _TIE))

    def hash_fields(self) -> dict[str, float | int | None]:
        """What the manifest's content hash covers, in one layout for both modes."""
        return {"test": self.test, "valid": None, "folds": None, "fold": None, **self.model_dump(exclude={"test"})}


class HoldoutSplit(_Split):
    """Hold-out: `valid` and `test` fractions of the rows; the rest is train."""

    valid: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _leave_rows_for_training(self) -> HoldoutSplit:
        if self.valid + self.test >= 1:
            raise ValueError(f"valid + test must be < 1, got {self.valid} + {self.test}")
        return self

    @property
    def bins(self) -> tuple[tuple[str, float], ...]:
        """The parts rows are dealt into, with their fractions: test, valid, train."""
        return (("test", self.test), ("valid", self.valid), ("train", 1.0 - self.test - self.valid))

    def describe(self) -> str:
        """Short text for messages, e.g. 'test=0.1, valid=0.2'."""
        return f"test={self.test:g}, valid={self.valid:g}"


class KFoldSplit(_Split):
    """K-fold: a fixed `test` split, the rest cut into `folds` folds; `fold` is the valid one."""

    folds: int = Field(ge=2)
    fold: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fold_in_range(self) -> KFoldSplit:
        if self.fold >= self.folds:
            raise ValueError(f"fold={self.fold} must be < folds={self.folds}")
        return self

    @property
    def bins(self) -> tuple[tuple[str, float], ...]:
        """Test first, then fold 0..k-1. Which fold is valid plays no part, so the test
        split and the folds are the same for every `fold`."""
        share = (1.0 - self.test) / self.folds
        return (("test", self.test), *((f"fold {k}", share) for k in range(self.folds)))

    def describe(self) -> str:
        return f"test={self.test:g}, folds={self.folds}"


SplitSpec = HoldoutSplit | KFoldSplit
"""How rows are split: hold-out or k-fold, plus a fixed test split. Validated once, where
the sweep config is read (these are its `data.split` section)."""


@dataclass(frozen=True)
class Manifest:
    """A split manifest on disk and in memory."""

    path: Path
    """The manifest CSV: the label columns plus `split` (and `fold` in k-fold mode)."""
    frame: pd.DataFrame
    """Its content: a copy of the labels (same row order) plus `split` (and `fold`)."""
    content_hash: str
    """sha256 over the labels' content, the split settings, the seed, the format version and
    the data.filter query (when one is set)."""
    reused: bool
    """True when a cached manifest with the same hash was read instead of built."""


def assign_splits(
    labels: pd.DataFrame,
    *,
    target: str,
    stratify: Sequence[str],
    group: str | None,
    split: SplitSpec,
    seed: int,
) -> pd.DataFrame:
    """Assign every row of `labels` to train, valid or test (and a fold in k-fold mode).

    Returns a copy of `labels` (same rows, same order) with a `split` column and, in
    k-fold mode, a `fold` column (-1 for test rows). Strata are the joint values of
    `target` and the `stratify` columns; the target always takes part, so every class
    keeps its share. Strata smaller than `split.min_stratum_size` are merged, with a
    warning, into one rare bucket per target class. With `group`, all rows of a group
    land in one split and fold. The result depends only on the labels' content, `split`
    and `seed`.

    Raises DataError for missing columns, NaN values, a target class too rare to reach
    every split, or groups that cannot be spread over every split.
    """
    strata_columns = _validate(labels, target=target, stratify=stratify, group=group)
    _check_seed(seed)
    bins = split.bins
    fractions = np.array([fraction for _, fraction in bins])
    classes, class_codes = _check_classes(labels, target, split)
    strata = _strata_codes(labels, strata_columns, class_codes, split.min_stratum_size)
    if group is None:
        groups = np.arange(len(labels))
        levels = [strata]
    else:
        groups = pd.factorize(labels[group], sort=False)[0]
        _check_groups(labels, target=target, group=group, groups=groups, split=split)
        # Whole groups cannot hit every joint stratum exactly; balancing the classes as
        # well keeps the target's shares close (about half the deviation of joint alone).
        levels = [strata] if len(strata_columns) == 1 else [strata, class_codes]

    bin_of_row = _greedy_assign(levels, groups, fractions, np.random.default_rng(seed))
    _check_coverage(bin_of_row, class_codes, classes, target=target, group=group, split=split)

    out = labels.copy()
    if split.kfold:
        fold = bin_of_row - 1  # bin 0 is test, bins 1..k are folds 0..k-1
        out["split"] = np.where(fold < 0, "test", np.where(fold == split.fold, "valid", "train"))
        out["fold"] = fold.astype(np.int64)
    else:
        out["split"] = np.array([name for name, _ in bins])[bin_of_row]
    return out


def build_or_load_manifest(
    labels: pd.DataFrame,
    *,
    target: str,
    stratify: Sequence[str],
    group: str | None,
    split: SplitSpec,
    seed: int,
    cache_dir: Path,
    row_filter: str | None = None,
) -> Manifest:
    """Reuse the cached manifest for these labels and settings, or build and cache it.

    `row_filter` is the data.filter query that `labels` were filtered with (None: none).

    The cache key is a sha256 over the settings (FORMAT_VERSION, target, stratify, group,
    split, seed, and `filter` only when a row_filter is given) as JSON with sorted keys, a
    NUL byte, and the labels as canonical CSV bytes (no index, "\\n" line ends), so it is
    the same on every machine. Files:
    `cache_dir/manifest-<hash[:16]>.csv` and its JSON sidecar `manifest-<hash[:16]>.json`
    (full hash and inputs). Both are written atomically, the sidecar last: a manifest
    counts as cached only once its sidecar exists with the matching hash, so a crash
    mid-write is rebuilt, never reused.
    """
    _check_seed(seed)
    settings = {
        "format_version": FORMAT_VERSION,
        "target": target,
        "stratify": list(stratify),
        "group": group,
        "split": split.hash_fields(),
        "seed": seed,
    }
    # Only when given: without a filter the key stays what it was before filters existed,
    # so the manifests cached then are still found.
    if row_filter is not None:
        settings["filter"] = row_filter
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=_plain).encode())
    digest.update(b"\0")
    digest.update(labels.to_csv(index=False, lineterminator="\n").encode())
    content_hash = digest.hexdigest()

    cache_dir = Path(cache_dir)
    csv_path = cache_dir / f"manifest-{content_hash[:16]}.csv"
    sidecar = cache_dir / f"manifest-{content_hash[:16]}.json"
    cached = _read_cached(csv_path, sidecar, content_hash, labels, split)
    if cached is not None:
        return Manifest(path=csv_path, frame=cached, content_hash=content_hash, reused=True)

    frame = assign_splits(labels, target=target, stratify=stratify, group=group, split=split, seed=seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(csv_path, lambda fh: frame.to_csv(fh, index=False, lineterminator="\n"))
    meta = {**settings, "hash": content_hash, "n_rows": len(frame)}
    _write_atomic(sidecar, lambda fh: json.dump(meta, fh, indent=2, sort_keys=True, default=_plain))
    return Manifest(path=csv_path, frame=frame, content_hash=content_hash, reused=False)


def describe_manifest(frame: pd.DataFrame, *, stratify: Sequence[str], group: str | None) -> str:
    """Human-readable summary of a manifest, for the `trial manifest` command.

    Per split: rows; for each stratify column and for their joint combination, the count
    and share (within the split) of each value; rows per fold when there is a `fold`
    column; and, with `group`, how many groups appear in more than one split (must be 0).
    """
    needed = ["split", *stratify, *([group] if group else []), *(["fold"] if "fold" in frame.columns else [])]
    _require_columns(frame, needed, what="manifest")
    splits = [name for name in SPLITS if (frame["split"] == name).any()]
    total = len(frame)
    counts = frame["split"].value_counts()
    lines = [f"rows: {total}"]
    lines += [f"  {name:<6}{counts[name]:>9}  {counts[name] / total:6.1%}" for name in splits]

    if "fold" in frame.columns:
        folds = frame.loc[frame["fold"] >= 0, "fold"].value_counts().sort_index()
        lines.append("rows per fold (test rows excluded):")
        lines += [f"  fold {int(k):<3}{n:>9}" for k, n in folds.items()]

    tables = [[column] for column in stratify]
    if len(stratify) > 1:
        tables.append(list(stratify))
    for columns in tables:
        title = " x ".join(columns)
        lines.append(f"{title}: count (share within split)")
        lines += ["  " + line for line in _share_table(frame, columns, splits).splitlines()]

    if group is not None:
        per_group = frame.groupby(group, sort=False)["split"]
        spread = per_group.nunique()
        in_split = frame.drop_duplicates([group, "split"])["split"].value_counts()
        parts = ", ".join(f"{name} {in_split.get(name, 0)}" for name in splits)
        lines.append(f"groups ({group}): {len(spread)} ({parts})")
        lines.append(f"  groups in more than one split: {int((spread > 1).sum())}")
        if "fold" in frame.columns:
            fold_spread = frame[frame["fold"] >= 0].groupby(group, sort=False)["fold"].nunique()
            lines.append(f"  groups in more than one fold: {int((fold_spread > 1).sum())}")
    return "\n".join(lines)


def describe_filter(before: pd.DataFrame, after: pd.DataFrame, *, query: str, columns: Sequence[str]) -> str:
    """What data.filter kept of the labels, for the `trial manifest` command: rows kept and
    dropped overall and per value of each of `columns` (missing values counted as nan)."""
    lines = [f"filter: {query}", f"  rows kept {len(after)}, dropped {len(before) - len(after)} of {len(before)}"]
    names: list[str] = []
    counts: list[tuple[int, int]] = []
    for column in dict.fromkeys(columns):
        total = before[column].value_counts(dropna=False).sort_index()
        kept = after[column].value_counts(dropna=False).reindex(total.index, fill_value=0)
        names += [f"{column}={value}" for value in total.index]
        counts += [(int(k), int(t - k)) for k, t in zip(kept, total)]
    width = max([len("column=value"), *map(len, names)])
    lines.append(f"  {'column=value':<{width}}{'kept':>9}{'dropped':>9}")
    lines += [f"  {name:<{width}}{k:>9}{d:>9}" for name, (k, d) in zip(names, counts)]
    return "\n".join(lines)


def _share_table(frame: pd.DataFrame, columns: list[str], splits: list[str]) -> str:
    """Value x split table of 'count (share)' cells; shares are within each split (and overall)."""
    counts = (
        frame.groupby([*columns, "split"], observed=True, sort=True)
        .size()
        .unstack("split", fill_value=0)
        .reindex(columns=splits, fill_value=0)
    )
    counts["all"] = counts.sum(axis=1)
    shares = counts / counts.sum(axis=0)
    cells = counts.astype(str) + " (" + (shares * 100).round(1).astype(str) + "%)"
    cells.columns.name = None
    return cells.to_string()


def _plain(value: object) -> object:
    """JSON for numpy scalars (a seed or fold count given as np.int64)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _show(value: object) -> str:
    """repr of a label value as the user wrote it: 4, not np.int64(4)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_seed(seed: object) -> None:
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], *, what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        available = ", ".join(map(str, frame.columns))
        raise DataError(f"{what}: column {names} not found; available columns: {available}")


def _validate(labels: pd.DataFrame, *, target: str, stratify: Sequence[str], group: str | None) -> list[str]:
    """Check the columns and return the strata columns: target first, then `stratify`."""
    if isinstance(stratify, str):
        # A bare string would be split into characters; ask for a list instead.
        raise DataError(f"stratify: expected a list of column names, got the string {stratify!r}")
    strata_columns = list(dict.fromkeys([target, *stratify]))
    used = [*strata_columns, *([group] if group is not None else [])]
    _require_columns(labels, used, what="labels")
    if len(labels) == 0:
        raise DataError("labels: no rows; the split needs at least one row per split")
    taken = [c for c in ("split", "fold") if c in labels.columns]
    if taken:
        raise DataError(
            f"labels: column {taken[0]!r} is reserved for the manifest's output; rename it in the labels"
        )
    for column in used:
        n_missing = int(labels[column].isna().sum())
        if n_missing:
            raise DataError(
                f"labels column {column!r}: {n_missing} missing (NaN) value(s) of {len(labels)}; "
                "target, stratify and group columns must be filled in every row"
            )
    return strata_columns


def _check_classes(labels: pd.DataFrame, target: str, split: SplitSpec) -> tuple[pd.Index, np.ndarray]:
    """Factorize the target and refuse classes too rare to reach every split."""
    codes, classes = pd.factorize(labels[target], sort=False)
    sizes = np.bincount(codes, minlength=len(classes))
    needed = split.min_stratum_size
    rare = [f"{_show(classes[k])} ({sizes[k]} rows)" for k in np.argsort(sizes, kind="stable") if sizes[k] < needed]
    if rare:
        raise DataError(
            f"target {target!r}: class {', '.join(rare)} too rare; with {split.describe()} every split "
            f"({', '.join(name for name, _ in split.bins)}) gets a row of a class only from {needed} rows "
            "up; drop or merge the class, or use larger split fractions"
        )
    return classes, codes


def _strata_codes(
    labels: pd.DataFrame, columns: list[str], class_codes: np.ndarray, min_size: int
) -> np.ndarray:
    """Joint strata codes; strata under `min_size` rows merge into one bucket per class.

    Merging per target class (not into one global bucket) keeps every class's share
    intact: each class has at least `min_size` rows, so either one of its strata or its
    rare bucket is big enough to reach every split.
    """
    if len(columns) == 1:
        return class_codes
    codes = labels.groupby(columns, sort=False, observed=True).ngroup().to_numpy()
    sizes = np.bincount(codes)
    small = sizes < min_size
    if not small.any():
        return codes
    keys = labels[columns].iloc[np.unique(codes, return_index=True)[1]]
    named = [f"({', '.join(map(str, keys.iloc[s]))}): {sizes[s]}" for s in np.flatnonzero(small)[:10]]
    more = f" and {int(small.sum()) - 10} more" if small.sum() > 10 else ""
    warnings.warn(
        f"{int(small.sum())} strata of ({', '.join(columns)}) have fewer than {min_size} rows, too few for "
        f"every split to get one; merged into a rare bucket per {columns[0]!r}: {', '.join(named)}{more}",
        UserWarning,
        stacklevel=3,
    )
    # A rare row's stratum becomes its class's bucket, coded past every regular stratum.
    merged = np.where(small[codes], len(sizes) + class_codes, codes)
    return pd.factorize(merged, sort=False)[0]


def _check_groups(
    labels: pd.DataFrame, *, target: str, group: str, groups: np.ndarray, split: SplitSpec
) -> None:
    n_bins = len(split.bins)
    n_groups = int(groups.max()) + 1
    if n_groups < n_bins:
        raise DataError(
            f"group column {group!r}: {n_groups} group(s), but a group lives in one split and "
            f"{split.describe()} needs at least {n_bins} ({', '.join(name for name, _ in split.bins)})"
        )
    per_class = pd.Series(groups).groupby(labels[target].to_numpy(), sort=False).nunique()
    short = per_class[per_class < n_bins]
    if len(short):
        named = ", ".join(f"{_show(value)} in {n} group(s)" for value, n in short.items())
        raise DataError(
            f"group column {group!r}: target {target!r} class {named}; a group lives in one split, so "
            f"every class needs rows in at least {n_bins} groups to reach every split with {split.describe()}"
        )


def _greedy_assign(
    levels: Sequence[np.ndarray], groups: np.ndarray, fractions: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Deal groups, largest first, each into the bin that least increases the squared error.

    `levels` are per-row stratum codes balanced together (the joint strata; with groups
    also the target classes). deficit[s, b] is how far bin b's count of stratum s is below
    its target. Adding a group with counts c to bin b changes the squared error by
    |c|^2 - 2 c . deficit[:, b], so the best bin maximises c . deficit[:, b]. Exact ties go
    to the bin furthest below its total target, which keeps equal folds equal in size.
    """
    offsets = np.cumsum([0, *(int(level.max()) + 1 for level in levels)])
    strata = np.concatenate([level + offset for level, offset in zip(levels, offsets)])
    owners = np.tile(groups, len(levels)).astype(np.int64)
    n_strata = int(offsets[-1])
    n_groups = int(groups.max()) + 1
    pairs, pair_counts = np.unique(owners * n_strata + strata, return_counts=True)
    pair_group, pair_stratum = np.divmod(pairs, n_strata)
    starts = np.searchsorted(pair_group, np.arange(n_groups + 1))
    sizes = np.bincount(groups, minlength=n_groups)
    # Largest groups first (they are the hardest to place); the seed orders equal sizes.
    order = np.lexsort((rng.permutation(n_groups), -sizes))

    deficit = np.outer(np.bincount(strata, minlength=n_strata), fractions)
    total_deficit = len(groups) * fractions
    bin_of_group = np.empty(n_groups, dtype=np.int64)
    for g in order:
        lo, hi = starts[g], starts[g + 1]
        if hi - lo == 1:  # a single row, or a group within one stratum: the common fast path
            s = pair_stratum[lo]
            score = deficit[s]
        else:
            s = pair_stratum[lo:hi]
            score = pair_counts[lo:hi] @ deficit[s]
        tied = np.flatnonzero(score >= score.max() - _TIE)
        b = tied[0] if len(tied) == 1 else tied[np.argmax(total_deficit[tied])]
        bin_of_group[g] = b
        deficit[s, b] -= pair_counts[lo] if hi - lo == 1 else pair_counts[lo:hi]
        total_deficit[b] -= sizes[g]
    return bin_of_group[groups]


def _check_coverage(
    bin_of_row: np.ndarray,
    class_codes: np.ndarray,
    classes: pd.Index,
    *,
    target: str,
    group: str | None,
    split: SplitSpec,
) -> None:
    """Every class must reach every bin; with rows as groups the class-size check ensures
    it, with real groups uneven group sizes can still prevent it."""
    n_bins = len(split.bins)
    present = np.bincount(class_codes * n_bins + bin_of_row, minlength=len(classes) * n_bins)
    present = present.reshape(len(classes), n_bins)
    missing = np.argwhere(present == 0)
    if len(missing):
        k, b = missing[0]
        where = f"group column {group!r}" if group is not None else f"target {target!r}"
        raise DataError(
            f"{where}: {target!r} class {_show(classes[k])} ({int(present[k].sum())} rows) reaches no row of "
            f"{split.bins[b][0]} with {split.describe()}; its groups are too few or too uneven to reach "
            "every split"
        )


def _read_cached(
    csv_path: Path, sidecar: Path, content_hash: str, labels: pd.DataFrame, split: SplitSpec
) -> pd.DataFrame | None:
    """The cached manifest's frame, or None when there is no complete, matching cache."""
    try:
        meta = json.loads(sidecar.read_text())
        if not isinstance(meta, dict) or meta.get("hash") != content_hash or meta.get("n_rows") != len(labels):
            return None
        columns = ["split", "fold"] if split.kfold else ["split"]
        cached = pd.read_csv(csv_path, usecols=columns, dtype={"split": str})
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if len(cached) != len(labels) or not cached["split"].isin(SPLITS).all():
        return None
    # The hash says the labels are the cached ones, so rebuild the frame from them: the
    # label columns keep their dtypes exactly (a CSV round trip would turn '007' into 7).
    frame = labels.copy()
    frame["split"] = cached["split"].to_numpy()
    if split.kfold:
        frame["fold"] = cached["fold"].to_numpy(np.int64)
    return frame


def _write_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    """Write via a temp file in the same folder and os.replace, so readers see all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
