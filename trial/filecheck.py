"""Verify the data files a labels CSV references, once, and pack them for the workers.

The driver resolves each row's path against the labels CSV's folder, checks every .npy
file (exists, loads, numeric, finite, same shape and dtype as the majority) and caches
each file's verdict by (absolute path, size, mtime_ns) in a small sqlite file, so the next
sweep over the same 100k files only stats them. The kept files are then packed into one
contiguous float32 .npy that every worker memory-maps, instead of opening 100k files per
epoch.

The cache holds one row per checked path list (the most recent few), its paths, sizes,
mtimes and verdict codes as packed columns: a rerun reads one row and compares arrays,
where one row per file made reading the cache back cost as much as the stats. A list not
seen before still reuses, path by path, the verdicts of the lists that are stored.

Prediction outputs (`<split>_probability.csv`, trial/runs.py's PREDICTION_OUTPUTS) are
results a sweep writes, never inputs: `check_files` skips them without opening them.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sqlite3
import stat
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import pandas as pd

from trial.errors import ConfigError, DataError, first_line
from trial.runs import PREDICTION_OUTPUTS

# The table name carries the checks' version: when the checks (or the layout) change, old
# verdicts are simply never read again.
_TABLE = "checks_v2"
# Path lists whose snapshots are kept, most recently used first: a few datasets or folds in
# turn, while the file stays a few MB per 100k paths.
_KEEP_LISTS = 8
_PATH_SEPARATOR = "\0"  # the one character no path holds
# Sizes, mtime_ns and verdict codes as stored: the same bytes on every machine.
_STAMP = np.dtype("<i8")
_CODE = np.dtype("<i4")
_NUMERIC_KINDS = "iuf"

_Verdict = tuple[str | None, tuple[int, ...] | None, str | None]
"""One file's own verdict: (reason it is bad or None, shape, dtype name); shape and dtype
only for a good file."""
_SKIPPED: _Verdict = (None, None, None)
_NPZ_REASON = "holds an .npz archive, expected a single array"
"""A prediction output's: ok, but not data, so it takes no part in the reference."""


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
    `cache_file`, keyed by (absolute path, size, mtime_ns); a rerun stats every file and
    opens only those whose size or mtime changed. The shape/dtype comparison is redone
    every call, being cheap. Names in PREDICTION_OUTPUTS are results, not inputs: they
    are neither opened nor reported bad.
    """
    # Plain strings in the loop: building 100k Path objects costs more than the stats.
    names = list(map(os.fspath, paths))
    verdicts = _Verdicts()
    codes = np.zeros(len(names), dtype=np.int32)  # per path, its verdict's code; 0 is _SKIPPED
    # The regular .npy files, the only ones whose verdicts are cached.
    positions: list[int] = []
    keys: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    # Local names and startswith (os.path.isabs on POSIX) in this loop: it runs once per
    # file on every rerun, where only the stat itself is work that must be done.
    os_stat, is_regular, sep = os.stat, stat.S_ISREG, os.sep
    for i, name in enumerate(names):
        # Every prediction output name ends in .csv: a .npy name needs no basename test.
        if not name.endswith(".npy"):
            if os.path.basename(name) not in PREDICTION_OUTPUTS:
                suffix = os.path.splitext(name)[1]
                reason = f"not a .npy file (suffix {suffix!r}); data files must be .npy arrays"
                codes[i] = verdicts.code((reason, None, None))
            continue
        key = name if name.startswith(sep) else os.path.abspath(name)
        try:
            st = os_stat(key)
        except FileNotFoundError:
            codes[i] = verdicts.code(("file not found", None, None))
            continue
        except OSError as error:
            codes[i] = verdicts.code((f"cannot stat: {error.strerror}", None, None))
            continue
        if not is_regular(st.st_mode):
            codes[i] = verdicts.code(("not a regular file", None, None))
            continue
        positions.append(i)
        keys.append(key)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    if keys:
        codes[positions] = _check_regular_files(keys, sizes, mtimes, verdicts, Path(cache_file))
    return _result(names, codes, verdicts.items)


def check_files_with_reader(paths: Sequence[Path], reader: Callable[[Path], Any], reader_name: str) -> FileCheckResult:
    """Verify each file through a user's reader (`data.reader`), with the checks `check_files`
    makes on what np.load returns. Not cached: the reader is code that may change.

    A reader that raises on a file makes that file bad (its message is the reason); one
    that returns something other than a numeric array is a ConfigError naming `data.reader`.
    """
    names = list(map(os.fspath, paths))
    verdicts = _Verdicts()
    codes = np.array([verdicts.code(_reader_verdict(name, reader, reader_name)) for name in names], dtype=np.int32)
    return _result(names, codes, verdicts.items)


def read_with(reader: Callable[[Path], Any], reader_name: str, path: str | Path) -> np.ndarray:
    """`reader(path)` as an array; a ConfigError naming `data.reader` when it returns something else."""
    value = reader(Path(path))
    if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC_KINDS:
        return value
    what = f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
    raise ConfigError(f"data.reader: {reader_name} returned {what} for {path}; expected a numeric numpy array")


def _array_verdict(array: np.ndarray) -> _Verdict:
    """A loaded numeric array's verdict, whoever read it: its values finite, then its shape and dtype."""
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            return f"{array.size - int(finite.sum())} non-finite value(s) (NaN or inf)", None, None
    return None, tuple(int(s) for s in array.shape), array.dtype.name


def _reader_verdict(path: str, reader: Callable[[Path], Any], reader_name: str) -> _Verdict:
    if not os.path.isfile(path):
        return "file not found", None, None
    try:
        array = read_with(reader, reader_name, path)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the reader failing on this file is a verdict about it
        return f"{reader_name} failed: {type(error).__name__}: {first_line(error)}", None, None
    return _array_verdict(array)


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
    paths: Sequence[Path],
    *,
    out_path: Path,
    shape: Sequence[int],
    dtype: str = "float32",
    reader: tuple[str, Callable[[Path], Any]] | None = None,
) -> Path:
    """Write the arrays of `paths` as one .npy [N, *shape] (row i = paths[i]) for mmap reading.

    Files are .npy, or read by `reader` (its config name and function). Workers open the
    result with `np.load(out_path, mmap_mode="r")`. Nothing is done when `out_path`
    exists: the caller puts a content key in its name. The output is written through a
    memory map (flat memory) to a temp file and moved into place atomically.
    """
    out_path = Path(out_path)
    if out_path.exists():
        return out_path
    shape = tuple(int(s) for s in shape)

    def load(path: Path) -> np.ndarray:
        if reader is not None:
            return read_with(reader[1], reader[0], path)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise DataError(f"data file {path}: cannot load as .npy: {_load_error_reason(error)}") from None
        if not isinstance(array, np.ndarray):
            array.close()
            raise DataError(f"data file {path}: {_NPZ_REASON}")
        return array

    def fill(out: np.ndarray) -> None:
        for i, path in enumerate(paths):
            array = load(path)
            # Checked explicitly: assignment would silently broadcast (1000,) into (3, 1000).
            if array.shape != shape:
                raise DataError(f"data file {path}: shape {array.shape}, expected {shape}")
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


def _load_error_reason(error: BaseException) -> str:
    text = str(error).strip()
    if "allow_pickle" in text:
        # numpy's advice here is to load it unsafely; for a data file that is never right.
        return "not a .npy array file (no .npy header, or pickled objects)"
    return first_line(error)


class _Layout(NamedTuple):
    """What a numeric .npy header says, worked out once per distinct header."""

    dtype: np.dtype
    dtype_name: str
    shape: tuple[int, ...]
    count: int
    """Number of values: the product of `shape`."""
    offset: int
    """Where the values start: the header's length."""


class _Verdicts:
    """The distinct verdicts of one check, numbered, so that per path only an int is kept."""

    def __init__(self) -> None:
        self.items: list[_Verdict] = [_SKIPPED]
        self._codes: dict[_Verdict, int] = {_SKIPPED: 0}

    def code(self, verdict: _Verdict) -> int:
        code = self._codes.get(verdict)
        if code is None:
            code = self._codes[verdict] = len(self.items)
            self.items.append(verdict)
        return code


def _check_regular_files(
    keys: list[str], sizes: list[int], mtimes: list[int], verdicts: _Verdicts, cache_file: Path
) -> np.ndarray:
    """The verdict code of each file: cached where (path, size, mtime_ns) still match, else inspected."""
    joined = _PATH_SEPARATOR.join(keys).encode("utf-8", "surrogateescape")
    list_key = hashlib.blake2b(joined, digest_size=16).hexdigest()
    size_array = np.array(sizes, dtype=_STAMP)
    mtime_array = np.array(mtimes, dtype=_STAMP)
    with _open_cache(cache_file) as conn:
        codes = np.full(len(keys), -1, dtype=_CODE)  # -1: no cached verdict that still holds
        still_exact = _reuse(conn, list_key, keys, size_array, mtime_array, codes, verdicts)
        fresh = np.flatnonzero(codes < 0)
        layouts: dict[bytes, _Layout | None] = {}
        codes[fresh] = [verdicts.code(_inspect(keys[j], sizes[j], layouts)) for j in fresh.tolist()]
        with conn:
            if still_exact:
                # Nothing to rewrite: only mark this list's snapshot recently used.
                conn.execute(f"UPDATE {_TABLE} SET used = ? WHERE key = ?", (time.time_ns(), list_key))
            else:
                row = (list_key, joined, size_array.tobytes(), mtime_array.tobytes(), codes.tobytes(),
                       json.dumps(verdicts.items), time.time_ns())
                conn.execute(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                conn.execute(
                    f"DELETE FROM {_TABLE} WHERE key NOT IN (SELECT key FROM {_TABLE} ORDER BY used DESC LIMIT ?)",
                    (_KEEP_LISTS,),
                )
    return codes


def _reuse(
    conn: sqlite3.Connection,
    list_key: str,
    keys: list[str],
    sizes: np.ndarray,
    mtimes: np.ndarray,
    codes: np.ndarray,
    verdicts: _Verdicts,
) -> bool:
    """Fill `codes` (-1 where unknown) from the stored snapshots whose (path, size, mtime_ns)
    still match, this very list's first, then the most recently used. True when this
    list's own snapshot held every verdict: nothing changed since it was stored."""
    # Keys first, blobs one snapshot at a time: sorting whole rows would read every snapshot.
    query = f"SELECT key FROM {_TABLE} ORDER BY key = ? DESC, used DESC"
    stored = [key for (key,) in conn.execute(query, (list_key,))]
    still_exact = False
    for key in stored:
        todo = np.flatnonzero(codes < 0)
        if not todo.size:
            break
        own = key == list_key
        if own:
            at = todo  # the same list: path j is stored at j
        else:
            (paths,) = conn.execute(f"SELECT paths FROM {_TABLE} WHERE key = ?", (key,)).fetchone()
            split = paths.decode("utf-8", "surrogateescape").split(_PATH_SEPARATOR)
            index = dict(zip(split, range(len(split))))
            at = np.array([index.get(keys[j], -1) for j in todo.tolist()], dtype=np.intp)
            todo, at = todo[at >= 0], at[at >= 0]
        query = f"SELECT sizes, mtimes, codes, verdicts FROM {_TABLE} WHERE key = ?"
        stored_sizes, stored_mtimes, stored_codes, stored_verdicts = conn.execute(query, (key,)).fetchone()
        same = (np.frombuffer(stored_sizes, _STAMP)[at] == sizes[todo]) & (
            np.frombuffer(stored_mtimes, _STAMP)[at] == mtimes[todo]
        )
        # The snapshot's codes number its own verdicts: translate them to this check's.
        translate = np.array([verdicts.code(_decode(v)) for v in json.loads(stored_verdicts)], dtype=_CODE)
        codes[todo[same]] = translate[np.frombuffer(stored_codes, _CODE)[at[same]]]
        still_exact = own and bool(same.all())
    return still_exact


def _decode(stored: list) -> _Verdict:
    reason, shape, dtype = stored  # JSON turned the shape tuple into a list
    return reason, None if shape is None else tuple(shape), dtype


def _result(names: list[str], codes: np.ndarray, verdicts: list[_Verdict]) -> FileCheckResult:
    """Compare the good files with the majority shape and dtype, and gather the verdict."""
    counts = np.bincount(codes, minlength=len(verdicts))
    present, first = np.unique(codes, return_index=True)
    # (shape, dtype, number of files, first position) per distinct good verdict.
    good = [
        (verdicts[c][1], verdicts[c][2], int(counts[c]), int(f))
        for c, f in zip(present.tolist(), first.tolist())
        if verdicts[c][0] is None and verdicts[c][1] is not None
    ]
    ref_shape = _majority([(shape, n, f) for shape, _, n, f in good], default=())
    ref_dtype = _majority([(dtype, n, f) for _, dtype, n, f in good], default="")
    reasons: list[str | None] = []
    for reason, shape, dtype in verdicts:
        if reason is None and shape is not None:
            mismatch = []
            if shape != ref_shape:
                mismatch.append(f"shape {shape}, expected {ref_shape}")
            if dtype != ref_dtype:
                mismatch.append(f"dtype {dtype}, expected {ref_dtype}")
            reason = "; ".join(mismatch) or None
        reasons.append(reason)
    ok = np.array([r is None for r in reasons], dtype=bool)[codes]
    bad = [(Path(names[i]), reasons[codes[i]]) for i in np.flatnonzero(~ok).tolist()]
    return FileCheckResult(ok=ok, bad=bad, shape=ref_shape, dtype=ref_dtype)


def _majority(counted: list[tuple[Any, int, int]], *, default: Any) -> Any:
    """The value held by most files, from (value, files, first position) parts; a tie goes
    to the value seen first, so the reference is deterministic."""
    totals: dict[Any, list[int]] = {}
    for value, n, first in counted:
        total = totals.setdefault(value, [0, first])
        total[0] += n
        total[1] = min(total[1], first)
    return max(totals, key=lambda v: (totals[v][0], -totals[v][1])) if totals else default


def _inspect(path: str, size: int, layouts: dict[bytes, _Layout | None]) -> _Verdict:
    """One file's own verdict from its bytes: the header parsed once per distinct header
    (in `layouts`), the values checked in place. A file that is not a plain numeric .npy
    goes to `_load_verdict`, so its reason stays exactly np.load's."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, size)
        finally:
            os.close(fd)
    except OSError:
        return _load_verdict(path)
    layout = _layout(data, layouts)
    if layout is None:
        return _load_verdict(path)
    dtype, dtype_name, shape, count, offset = layout
    # np.load ignores bytes after the array, as here, but fails on too few.
    if len(data) < offset + count * dtype.itemsize:
        return _load_verdict(path)
    if dtype.kind == "f":
        finite = np.isfinite(np.frombuffer(data, dtype, count, offset))
        if not finite.all():
            return f"{count - int(np.count_nonzero(finite))} non-finite value(s) (NaN or inf)", None, None
    return None, shape, dtype_name


def _layout(data: bytes, layouts: dict[bytes, _Layout | None]) -> _Layout | None:
    """The layout of a numeric .npy with a version 1.0 or 2.0 header, else None."""
    if data[:6] != np.lib.format.MAGIC_PREFIX:
        return None
    version = data[6:8]
    if version == b"\x01\x00":
        offset = 10 + int.from_bytes(data[8:10], "little")
    elif version == b"\x02\x00":
        offset = 12 + int.from_bytes(data[8:12], "little")
    else:
        return None
    header = data[:offset]
    if header not in layouts:
        layouts[header] = _parse_header(header)
    return layouts[header]


def _parse_header(header: bytes) -> _Layout | None:
    stream = io.BytesIO(header)
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream)
    # A header numpy cannot read is np.load's to explain (by `_load_verdict`), whatever broke.
    except Exception:  # noqa: BLE001
        return None
    # numpy reads a negative dimension without complaint and only fails loading the values.
    if dtype.kind not in _NUMERIC_KINDS or any(s < 0 for s in shape):
        return None
    shape = tuple(int(s) for s in shape)
    # The name once per header: dtype.name costs more than reading a small file.
    return _Layout(dtype, dtype.name, shape, math.prod(shape), len(header))


def _load_verdict(path: str) -> _Verdict:
    """One file's own verdict through np.load: the reference behaviour, and the reasons."""
    try:
        array = np.load(path, allow_pickle=False)
    # Broken bytes surface as ValueError, OSError, EOFError or an unpickling error depending
    # on where the damage is; any of them is a verdict about the file, not a crash.
    except Exception as error:  # noqa: BLE001
        return f"cannot load as .npy: {_load_error_reason(error)}", None, None
    if not isinstance(array, np.ndarray):
        array.close()
        return _NPZ_REASON, None, None
    if array.dtype.kind not in _NUMERIC_KINDS:
        return f"dtype {array.dtype}, expected a numeric (integer or float) dtype", None, None
    return _array_verdict(array)


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
            # Per path list, keyed by a hash of its paths: the \0-joined UTF-8 paths, then one
            # entry per path of sizes and mtimes (little-endian int64), codes (int32 indexes
            # into verdicts, a JSON list of [reason, shape, dtype]); `used` (time_ns) orders eviction.
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, paths BLOB NOT NULL, "
                "sizes BLOB NOT NULL, mtimes BLOB NOT NULL, codes BLOB NOT NULL, verdicts TEXT NOT NULL, "
                "used INTEGER NOT NULL)"
            )
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


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
    # A value beyond float32's range becomes inf in the cast, and is reported below as such.
    with np.errstate(over="ignore"):
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
