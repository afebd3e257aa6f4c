"""Verify the data files a labels CSV references, once, and pack them for the workers.

The driver resolves each row's path against the labels CSV's folder, checks every .npy
file (exists, loads, numeric, finite, same shape and dtype as the majority) and caches
each file's verdict by (absolute path, size, mtime_ns) in a small sqlite file, so the next
sweep over the same 100k files only stats them. The kept files are then packed into one
contiguous float32 .npy that every worker memory-maps, instead of opening 100k files per
epoch.

Prediction outputs (`train_probability.csv`, `valid_probability.csv`,
`test_probability.csv`) are results a sweep writes, never inputs: `check_files` skips
them without opening them.
"""
from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from trial.errors import ConfigError, DataError

PREDICTION_OUTPUTS = frozenset({"train_probability.csv", "valid_probability.csv", "test_probability.csv"})
# The table name carries the checks' version: when the checks change, old verdicts are
# simply never read again.
_TABLE = "verdicts_v1"
# SQLite's historical limit on bound parameters is 999; stay below it.
_LOOKUP_CHUNK = 900
_NUMERIC_KINDS = "iuf"


@dataclass(frozen=True, eq=False)
class FileCheckResult:
    """The verdict over a list of data files, in the order they were given."""

    ok: np.ndarray
    """bool per path: usable as data."""
    bad: list[tuple[Path, str]]
    """(path, reason) for every path that is not ok, in input order."""
    shape: tuple[int, ...]
    """The reference (majority) shape of the good files; () when none is good."""
    dtype: str
    """The reference (majority) dtype name of the good files, e.g. 'float32'; '' when none is good."""


def resolve_paths(
    frame: pd.DataFrame, *, path_column: str, root: Path, allow_outside_root: bool
) -> list[Path]:
    """Absolute paths of `frame[path_column]`, read relative to `root` (the labels CSV's folder).

    Absolute paths are accepted when they lie inside `root`. A path that escapes `root`
    (`../x.npy`, `/etc/x.npy`) is a DataError naming the row, unless `allow_outside_root`.
    The check is lexical, so a symlinked folder inside `root` (shared storage mounted into
    the data folder) stays allowed.
    """
    if path_column not in frame.columns:
        available = ", ".join(map(str, frame.columns))
        raise DataError(f"labels: path column {path_column!r} not found; available columns: {available}")
    root_abs = os.path.abspath(root)
    root_real = os.path.realpath(root)
    resolved: list[Path] = []
    outside: list[tuple[object, str]] = []
    for index, value in zip(frame.index, frame[path_column]):
        if not isinstance(value, str) or not value.strip():
            raise DataError(
                f"labels column {path_column!r} row {index}: expected a file path, got {value!r}"
            )
        full = os.path.normpath(os.path.join(root_abs, value))  # join keeps an absolute value as is
        if not allow_outside_root and not (
            _inside(full, root_abs) or _inside(os.path.realpath(full), root_real)
        ):
            outside.append((index, value))
        resolved.append(Path(full))
    if outside:
        index, value = outside[0]
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise DataError(
            f"labels column {path_column!r} row {index}: path {value!r} is outside the data root {root_abs}{more}; "
            "paths must be relative to the labels CSV's folder or inside it (allow_outside_root allows others)"
        )
    return resolved


def check_files(paths: Sequence[Path], *, cache_file: Path) -> FileCheckResult:
    """Verify each .npy file, reusing cached verdicts of files unchanged since (size, mtime_ns).

    A file is ok when it exists, loads with `np.load(allow_pickle=False)`, has a numeric
    dtype, holds only finite values, and has the shape and dtype most of the good files
    have (the reference). Each file's own verdict is cached in the sqlite file
    `cache_file`; the shape/dtype comparison is redone every call, being cheap. Names in
    PREDICTION_OUTPUTS are results, not inputs: they are neither opened nor reported bad.
    """
    # Plain strings in the loop: building 100k Path objects costs more than the stats.
    names = [os.fspath(p) for p in paths]
    n = len(names)
    # Per path: a reason it is bad, or None with its (shape, dtype) once known good.
    reasons: list[str | None] = [None] * n
    found: list[tuple[tuple[int, ...], str] | None] = [None] * n
    to_check: list[tuple[int, str, int, int]] = []  # (position, absolute path, size, mtime_ns)
    for i, name in enumerate(names):
        if os.path.basename(name) in PREDICTION_OUTPUTS:
            continue
        if not name.endswith(".npy"):
            suffix = os.path.splitext(name)[1]
            reasons[i] = f"not a .npy file (suffix {suffix!r}); data files must be .npy arrays"
            continue
        key = name if os.path.isabs(name) else os.path.abspath(name)
        try:
            st = os.stat(key)
        except FileNotFoundError:
            reasons[i] = "file not found"
            continue
        except OSError as error:
            reasons[i] = f"cannot stat: {error.strerror}"
            continue
        if not stat.S_ISREG(st.st_mode):
            reasons[i] = "not a regular file"
            continue
        to_check.append((i, key, st.st_size, st.st_mtime_ns))

    with _open_cache(Path(cache_file)) as conn:
        cached = _lookup(conn, [key for _, key, _, _ in to_check])
        fresh: list[tuple[str, int, int, str | None, str | None, str | None]] = []
        for i, key, size, mtime_ns in to_check:
            hit = cached.get(key)
            if hit is not None and hit[:2] == (size, mtime_ns):
                reason, shape, dtype = hit[2:]
            else:
                reason, shape, dtype = _inspect(key)
                fresh.append((key, size, mtime_ns, reason, _encode_shape(shape), dtype))
            reasons[i] = reason
            if reason is None:
                found[i] = (shape, dtype)
        if fresh:
            # One transaction for every new verdict: 100k single-row commits would take minutes.
            with conn:
                conn.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?)", fresh)

    good = [f for f in found if f is not None]
    # most_common keeps first-seen order on ties, so the reference is deterministic.
    ref_shape = Counter(shape for shape, _ in good).most_common(1)[0][0] if good else ()
    ref_dtype = Counter(dtype for _, dtype in good).most_common(1)[0][0] if good else ""
    for i, f in enumerate(found):
        if f is None:
            continue
        shape, dtype = f
        mismatch = []
        if shape != ref_shape:
            mismatch.append(f"shape {shape}, expected {ref_shape}")
        if dtype != ref_dtype:
            mismatch.append(f"dtype {dtype}, expected {ref_dtype}")
        if mismatch:
            reasons[i] = "; ".join(mismatch)
    ok = np.array([r is None for r in reasons], dtype=bool)
    bad = [(Path(names[i]), r) for i, r in enumerate(reasons) if r is not None]
    return FileCheckResult(ok=ok, bad=bad, shape=ref_shape, dtype=ref_dtype)


def apply_bad_file_policy(
    frame: pd.DataFrame, result: FileCheckResult, *, on_bad_file: Literal["error", "skip"]
) -> pd.DataFrame:
    """Refuse (`error`) or drop with a warning (`skip`) the rows whose data file is bad.

    `result` must come from `check_files` over this frame's paths, in row order. The kept
    rows keep their index, so `frame.index` still points into the original path list.
    """
    if on_bad_file not in ("error", "skip"):
        raise ConfigError(f"data.on_bad_file: expected 'error' or 'skip', got {on_bad_file!r}")
    if len(result.ok) != len(frame):
        raise ValueError(f"the file check covers {len(result.ok)} paths but the frame has {len(frame)} rows")
    if not result.bad:
        return frame
    first_path, first_reason = result.bad[0]
    n_bad = len(result.bad)
    if on_bad_file == "error":
        more = f" (and {n_bad - 1} more)" if n_bad > 1 else ""
        raise DataError(f"data file {first_path}: {first_reason}{more}; on_bad_file: skip drops such rows")
    if n_bad == len(frame):
        raise DataError(f"every one of the {n_bad} data files is bad; first: {first_path}: {first_reason}")
    shown = ", ".join(f"{path} ({reason})" for path, reason in result.bad[:3])
    warnings.warn(
        f"skipping {n_bad} of {len(frame)} rows whose data file is bad: {shown}"
        + (f" and {n_bad - 3} more" if n_bad > 3 else ""),
        UserWarning,
        stacklevel=2,
    )
    return frame[result.ok]


def pack_arrays(
    paths: Sequence[Path], *, out_path: Path, shape: Sequence[int], dtype: str = "float32"
) -> Path:
    """Write the arrays of `paths` as one .npy [N, *shape] (row i = paths[i]) for mmap reading.

    Workers open it with `np.load(out_path, mmap_mode="r")`. Nothing is done when
    `out_path` exists: the caller puts a content key in its name. The output is written
    through a memory map (flat memory) to a temp file and moved into place atomically.
    """
    out_path = Path(out_path)
    if out_path.exists():
        return out_path
    shape = tuple(int(s) for s in shape)

    def fill(out: np.ndarray) -> None:
        for i, path in enumerate(paths):
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as error:
                raise DataError(f"data file {path}: cannot load as .npy: {_first_line(error)}") from None
            # Checked explicitly: assignment would silently broadcast (1000,) into (3, 1000).
            if not isinstance(array, np.ndarray) or array.shape != shape:
                got = array.shape if isinstance(array, np.ndarray) else "an .npz archive"
                raise DataError(f"data file {path}: shape {got}, expected {shape}")
            out[i] = array

    _write_npy_atomic(out_path, (len(paths), *shape), dtype, fill)
    return out_path


def pack_features(frame: pd.DataFrame, columns: Sequence[str], *, out_path: Path) -> Path:
    """Write tabular feature columns as one float32 .npy [N, len(columns)] for mmap reading.

    Non-numeric, missing (NaN) or infinite values are a DataError naming the column and
    the first offending row. Skipped when `out_path` exists, like `pack_arrays`.
    """
    out_path = Path(out_path)
    if out_path.exists():
        return out_path
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns))
        raise DataError(f"features: column {missing[0]!r} not found; available columns: {available}")
    # Validate every column before writing anything.
    values = [_feature_values(frame, column) for column in columns]

    def fill(out: np.ndarray) -> None:
        for j, column_values in enumerate(values):
            out[:, j] = column_values

    _write_npy_atomic(out_path, (len(frame), len(columns)), "float32", fill)
    return out_path


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _inspect(path: str) -> tuple[str | None, tuple[int, ...] | None, str | None]:
    """One file's own verdict: (reason or None, shape, dtype name)."""
    try:
        array = np.load(path, allow_pickle=False)
    # Broken bytes surface as ValueError, OSError, EOFError or an unpickling error depending
    # on where the damage is; any of them is a verdict about the file, not a crash.
    except Exception as error:  # noqa: BLE001
        return f"cannot load as .npy: {_first_line(error)}", None, None
    if not isinstance(array, np.ndarray):
        array.close()
        return "holds an .npz archive, expected a single array", None, None
    if array.dtype.kind not in _NUMERIC_KINDS:
        return f"dtype {array.dtype}, expected a numeric (integer or float) dtype", None, None
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            return f"{array.size - int(finite.sum())} non-finite value(s) (NaN or inf)", None, None
    return None, tuple(int(s) for s in array.shape), array.dtype.name


@contextmanager
def _open_cache(path: Path) -> Iterator[sqlite3.Connection]:
    """The verdict cache as a sqlite connection; an unreadable cache file is rebuilt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError as error:
        # A cache only saves time: a corrupt one is discarded, never a reason to stop.
        warnings.warn(f"file check cache {path} unreadable ({error}); rebuilding it", UserWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        conn = _connect(path)
    try:
        yield conn
    finally:
        conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    # timeout: two drivers checking at once wait for each other's write instead of failing.
    conn = sqlite3.connect(path, timeout=60)
    try:
        with conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, reason TEXT, shape TEXT, dtype TEXT)"
            )
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _lookup(conn: sqlite3.Connection, keys: list[str]) -> dict[str, tuple]:
    """Cached rows for `keys`: path -> (size, mtime_ns, reason, shape, dtype)."""
    rows: dict[str, tuple] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT path, size, mtime_ns, reason, shape, dtype FROM {_TABLE} WHERE path IN ({marks})"
        for path, size, mtime_ns, reason, shape, dtype in conn.execute(query, chunk):
            rows[path] = (size, mtime_ns, reason, _decode_shape(shape), dtype)
    return rows


def _encode_shape(shape: tuple[int, ...] | None) -> str | None:
    # "3,1000"; "" is a 0-d array, None a file without a shape (a bad one).
    return None if shape is None else ",".join(map(str, shape))


def _decode_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    return tuple(int(s) for s in text.split(",")) if text else ()


def _feature_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    series = frame[column]
    if not pd.api.types.is_numeric_dtype(series):
        numbers = pd.to_numeric(series, errors="coerce")
        wrong = series[numbers.isna() & series.notna()]
        if len(wrong):
            raise DataError(
                f"feature column {column!r}: non-numeric value {wrong.iloc[0]!r} in row {wrong.index[0]} "
                f"(dtype {series.dtype}); features must be numbers"
            )
        series = numbers
    values = series.to_numpy(dtype=np.float32, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        first = frame.index[int(np.argmin(finite))]
        raise DataError(
            f"feature column {column!r}: {int((~finite).sum())} missing (NaN) or infinite value(s), first in row "
            f"{first}; fill or drop them (a value beyond float32's range counts as infinite)"
        )
    return values


def _write_npy_atomic(
    out_path: Path, shape: tuple[int, ...], dtype: str, fill: Callable[[np.ndarray], None]
) -> None:
    """Create a .npy of `shape` through a memory map, let `fill` write it, then move it into place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(out)
        out.flush()
        del out
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
