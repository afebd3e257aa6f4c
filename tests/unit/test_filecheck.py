"""File check: verdicts and reasons, the (size, mtime) cache, bad-file policies, root confinement, packing."""
from __future__ import annotations

import io
import os
import pickle
import re
import sqlite3
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trial import filecheck
from trial.errors import ConfigError, DataError
from trial.filecheck import (
    FileCheckResult,
    apply_bad_file_policy,
    check_files,
    pack_arrays,
    pack_features,
    resolve_paths,
)
from trial.runs import PREDICTION_OUTPUTS

SHAPE = (3, 20)


def good_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def write_file(path: Path, kind: str, seed: int = 0) -> None:
    """One data file of a given kind; every kind except 'good' must be reported bad."""
    if kind == "missing":
        return
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(seed).bytes(64))
        return
    if kind == "pickle":
        path.write_bytes(pickle.dumps([1.0, 2.0]))
        return
    if kind == "truncated":
        path.write_bytes(npy_bytes(good_array(seed))[:-4])
        return
    if kind == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, x=good_array(seed))
        return
    array = {
        "good": good_array(seed),
        "shape": np.zeros((2, 5), np.float32),
        "nan": np.where(np.arange(60).reshape(SHAPE) == 7, np.nan, 1.0).astype(np.float32),
        "dtype": good_array(seed).astype(np.float64),
        "text": np.array(["a", "b"]),
    }[kind]
    np.save(path, array)


EXPECTED_REASON = {
    "missing": "file not found",
    # Bytes without a .npy header: numpy would suggest loading them as a pickle.
    "corrupt": "cannot load as .npy: not a .npy array file (no .npy header, or pickled objects)",
    "pickle": "cannot load as .npy: not a .npy array file (no .npy header, or pickled objects)",
    "truncated": "cannot load as .npy: ",  # then the first line of numpy's own words
    "npz": "holds an .npz archive, expected a single array",
    "shape": "shape (2, 5), expected (3, 20)",
    "nan": "1 non-finite value(s) (NaN or inf)",
    "dtype": "dtype float64, expected float32",
    "text": "dtype <U1, expected a numeric (integer or float) dtype",
}


def reason_is(kind: str, reason: str, path: Path) -> bool:
    if kind == "truncated":
        return reason == EXPECTED_REASON[kind] + numpy_load_error(path)
    return reason == EXPECTED_REASON[kind]


def numpy_load_error(path: Path) -> str:
    """The first line of what np.load says about a broken file."""
    with pytest.raises(Exception) as error:
        np.load(path, allow_pickle=False)
    return str(error.value).strip().splitlines()[0]


def make_files(root: Path, kinds: list[str]) -> list[Path]:
    paths = []
    for i, kind in enumerate(kinds):
        path = root / f"x{i}.npy"
        write_file(path, kind, seed=i)
        paths.append(path)
    return paths


class CallCounter:
    """Wraps `owner.name` to count its calls: the evidence that cached verdicts skip the work."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.calls = 0
        real = getattr(owner, name)

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)


def count_loads(monkeypatch: pytest.MonkeyPatch) -> CallCounter:
    return CallCounter(monkeypatch, np, "load")


def count_inspections(monkeypatch: pytest.MonkeyPatch) -> CallCounter:
    """Counts the files check_files opens (each through filecheck._inspect)."""
    return CallCounter(monkeypatch, filecheck, "_inspect")


def test_good_files_pass(tmp_path):
    paths = make_files(tmp_path, ["good"] * 5)
    result = check_files(paths, cache_file=tmp_path / "cache.sqlite")
    assert result.ok.tolist() == [True] * 5
    assert result.bad == []
    assert result.shape == SHAPE and result.dtype == "float32"


@pytest.mark.parametrize("kind", sorted(EXPECTED_REASON))
def test_bad_files_are_reported_with_path_and_reason(tmp_path, kind):
    paths = make_files(tmp_path, ["good", "good", kind, "good"])
    result = check_files(paths, cache_file=tmp_path / "cache.sqlite")
    assert result.ok.tolist() == [True, True, False, True]
    [(path, reason)] = result.bad
    assert path == paths[2]
    assert reason_is(kind, reason, path), reason
    assert result.shape == SHAPE and result.dtype == "float32"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["good", "good", "good", *EXPECTED_REASON]), min_size=1, max_size=8))
def test_exactly_the_bad_files_are_reported(kinds):
    kinds = ["good"] * (len(kinds) + 1) + kinds  # good files are the majority, so they set the reference
    with tempfile.TemporaryDirectory() as folder:
        paths = make_files(Path(folder), kinds)
        result = check_files(paths, cache_file=Path(folder) / "cache.sqlite")
        assert result.ok.tolist() == [kind == "good" for kind in kinds]
        assert [p for p, _ in result.bad] == [p for p, kind in zip(paths, kinds) if kind != "good"]
        for (path, reason), kind in zip(result.bad, [k for k in kinds if k != "good"]):
            assert reason_is(kind, reason, path), reason


def test_cached_verdicts_skip_loading(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good", "good", "corrupt", "nan", "good", "shape"])
    cache = tmp_path / "cache.sqlite"
    first = check_files(paths, cache_file=cache)
    inspections, loads = count_inspections(monkeypatch), count_loads(monkeypatch)
    second = check_files(paths, cache_file=cache)
    assert inspections.calls == 0 and loads.calls == 0
    assert second.ok.tolist() == first.ok.tolist()
    assert second.bad == first.bad
    assert (second.shape, second.dtype) == (first.shape, first.dtype)


def test_changed_file_is_checked_again(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good"] * 4)
    cache = tmp_path / "cache.sqlite"
    check_files(paths, cache_file=cache)
    # Same size (same shape and dtype), new content and a new mtime: only mtime tells.
    write_file(paths[1], "nan")
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    inspections = count_inspections(monkeypatch)
    result = check_files(paths, cache_file=cache)
    assert inspections.calls == 1
    assert result.ok.tolist() == [True, False, True, True]


def test_unreadable_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good", "corrupt"])
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(b"not a database at all" * 100)
    with pytest.warns(UserWarning, match="unreadable"):
        result = check_files(paths, cache_file=cache)
    assert result.ok.tolist() == [True, False]
    inspections = count_inspections(monkeypatch)
    assert check_files(paths, cache_file=cache).ok.tolist() == [True, False]
    assert inspections.calls == 0  # the rebuilt cache holds both verdicts


def test_paths_that_cannot_be_stat_or_are_not_files(tmp_path):
    files = make_files(tmp_path, ["good", "good", "nan"])
    (tmp_path / "folder.npy").mkdir()
    # Under a file; a directory; each followed by more files that must still be checked.
    paths = [files[0], files[0] / "inside.npy", files[1], tmp_path / "folder.npy", files[2]]
    result = check_files(paths, cache_file=tmp_path / "cache.sqlite")
    assert result.ok.tolist() == [True, False, True, False, False]
    assert result.bad == [
        (paths[1], "cannot stat: Not a directory"),
        (paths[3], "not a regular file"),
        (paths[4], EXPECTED_REASON["nan"]),
    ]


def test_the_reference_comes_from_data_files_only(tmp_path):
    # Prediction outputs are skipped, not data: even outnumbering the data files they set no
    # reference. A file off in both shape and dtype names both.
    paths = make_files(tmp_path, ["good", "good"]) + [tmp_path / name for name in sorted(PREDICTION_OUTPUTS)]
    np.save(tmp_path / "odd.npy", np.zeros((2, 5)))
    result = check_files([*paths, tmp_path / "odd.npy"], cache_file=tmp_path / "cache.sqlite")
    assert (result.shape, result.dtype) == (SHAPE, "float32")
    assert result.bad == [(tmp_path / "odd.npy", "shape (2, 5), expected (3, 20); dtype float64, expected float32")]


def test_the_reference_shape_counts_files_of_every_dtype(tmp_path):
    # Shape (3, 20) in 2 float32 and 2 float64 files outnumbers (2, 5) in 3 float32 files,
    # though no single (shape, dtype) pair does; float32 (5 files) is the reference dtype.
    paths = []
    for i, (shape, dtype) in enumerate([(SHAPE, np.float32)] * 2 + [(SHAPE, np.float64)] * 2 + [((2, 5), np.float32)] * 3):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], np.zeros(shape, dtype=dtype))
    result = check_files(paths, cache_file=tmp_path / "cache.sqlite")
    assert (result.shape, result.dtype) == (SHAPE, "float32")
    assert result.ok.tolist() == [True, True, False, False, False, False, False]


def test_with_no_good_file_there_is_no_reference(tmp_path):
    result = check_files(make_files(tmp_path, ["missing", "nan"]), cache_file=tmp_path / "cache.sqlite")
    assert (result.shape, result.dtype) == ((), "")


def test_a_file_name_that_is_not_utf8_is_checked_and_cached(tmp_path, monkeypatch):
    # Linux names are bytes: one that is not UTF-8 reaches Python with surrogate escapes.
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.npy"))
    np.save(odd, good_array())
    paths = make_files(tmp_path, ["good"]) + [odd]
    cache = tmp_path / "cache.sqlite"
    assert check_files(paths, cache_file=cache).ok.tolist() == [True, True]
    inspections = count_inspections(monkeypatch)
    assert check_files(paths[::-1], cache_file=cache).ok.tolist() == [True, True]  # another list
    assert check_files(paths, cache_file=cache).ok.tolist() == [True, True]  # the same list
    assert inspections.calls == 0


def test_a_file_that_cannot_be_opened_directly_gets_np_loads_verdict(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good", "good"])
    real_open = os.open

    def refuse_first(path, *args, **kwargs):
        if os.fspath(path) == str(paths[0]):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(filecheck.os, "open", refuse_first)
    assert check_files(paths, cache_file=tmp_path / "cache.sqlite").ok.tolist() == [True, True]


def test_prediction_outputs_and_other_suffixes(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good"]) + [tmp_path / "test_probability.csv", tmp_path / "image.png"]
    (tmp_path / "image.png").write_bytes(b"png")
    inspections = count_inspections(monkeypatch)
    result = check_files(paths, cache_file=tmp_path / "cache.sqlite")
    assert inspections.calls == 1  # the prediction output is never opened
    assert result.ok.tolist() == [True, True, False]
    assert result.bad == [(paths[2], "not a .npy file (suffix '.png'); data files must be .npy arrays")]


def test_changed_size_is_noticed_even_with_the_old_mtime(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good"] * 3)
    cache = tmp_path / "cache.sqlite"
    check_files(paths, cache_file=cache)
    before = os.stat(paths[0])
    write_file(paths[0], "shape")
    os.utime(paths[0], ns=(before.st_atime_ns, before.st_mtime_ns))
    inspections = count_inspections(monkeypatch)
    result = check_files(paths, cache_file=cache)
    assert inspections.calls == 1
    assert result.ok.tolist() == [False, True, True]


def test_another_list_reuses_the_stored_verdicts(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good", "nan", "good", "good", "corrupt"])
    cache = tmp_path / "cache.sqlite"
    check_files(paths[:4], cache_file=cache)
    inspections = count_inspections(monkeypatch)
    result = check_files(paths[::-1], cache_file=cache)  # reordered, with one new file
    assert inspections.calls == 1
    assert result.ok.tolist() == [False, True, True, False, True]
    [(corrupt, corrupt_reason), (nan, nan_reason)] = result.bad
    assert (corrupt, nan) == (paths[4], paths[1])
    assert reason_is("corrupt", corrupt_reason, corrupt) and reason_is("nan", nan_reason, nan)
    assert check_files(paths[:4], cache_file=cache).ok.tolist() == [True, False, True, True]
    assert inspections.calls == 1


def test_relative_and_absolute_paths_share_verdicts(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good", "nan"])
    cache = tmp_path / "cache.sqlite"
    monkeypatch.chdir(tmp_path)
    relative = check_files([Path(p.name) for p in paths], cache_file=cache)
    assert relative.ok.tolist() == [True, False] and relative.bad[0][0] == Path("x1.npy")
    inspections = count_inspections(monkeypatch)
    assert check_files(paths, cache_file=cache).ok.tolist() == [True, False]
    assert inspections.calls == 0


def test_cache_keeps_the_most_recent_lists(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good"] * (filecheck._KEEP_LISTS + 2))
    cache = tmp_path / "cache.sqlite"
    for path in paths:  # one list per file, oldest first
        check_files([path], cache_file=cache)
    with sqlite3.connect(cache) as conn:
        assert conn.execute(f"SELECT COUNT(*) FROM {filecheck._TABLE}").fetchone() == (filecheck._KEEP_LISTS,)
    inspections = count_inspections(monkeypatch)
    # The list just written stays: rechecking it opens nothing ...
    assert check_files([paths[-1]], cache_file=cache).bad == []
    assert inspections.calls == 0
    # ... while the two oldest lists were dropped.
    assert check_files(paths, cache_file=cache).bad == []
    assert inspections.calls == 2


def test_a_tie_goes_to_the_shape_seen_first(tmp_path):
    paths = make_files(tmp_path, ["shape", "good"])
    cache = tmp_path / "cache.sqlite"
    first = check_files(paths, cache_file=cache)
    assert first.shape == (2, 5) and first.ok.tolist() == [True, False]
    reversed_ = check_files(paths[::-1], cache_file=cache)  # cached verdicts, input order still decides
    assert reversed_.shape == SHAPE and reversed_.ok.tolist() == [True, False]


def npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array(stream, array, version=version)
    return stream.getvalue()


def npz_bytes() -> bytes:
    stream = io.BytesIO()
    np.savez(stream, x=good_array())
    return stream.getvalue()


# File contents, and whether the header is enough to decide without np.load.
INSPECTED = {
    "float32": (npy_bytes(good_array()), True),
    "fortran float64": (npy_bytes(np.asfortranarray(good_array().astype(np.float64))), True),
    "big-endian": (npy_bytes(good_array().astype(">f4")), True),
    "int16": (npy_bytes(np.arange(60, dtype=np.int16).reshape(SHAPE)), True),
    "0-d uint8": (npy_bytes(np.array(7, np.uint8)), True),
    "empty": (npy_bytes(np.zeros((0, 20), np.float32)), True),
    "version 2 header": (npy_bytes(good_array(), version=(2, 0)), True),
    "float16 overflowing sum": (npy_bytes(np.full(SHAPE, 60000, np.float16)), True),
    "nan and infs": (npy_bytes(np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32)), True),
    "trailing bytes": (npy_bytes(good_array()) + b"more", True),
    "version 3 header": (npy_bytes(good_array(), version=(3, 0)), False),
    "truncated values": (npy_bytes(good_array())[:-4], False),
    "truncated header": (npy_bytes(good_array())[:40], False),
    "negative dimension": (npy_bytes(good_array()).replace(b"(3, 20), }", b"(-3, 20),}"), False),
    "empty file": (b"", False),
    "bool": (npy_bytes(np.ones(SHAPE, bool)), False),
    "complex": (npy_bytes(np.ones(SHAPE, np.complex64)), False),
    "text": (npy_bytes(np.array(["a", "b"])), False),
    "object": (npy_bytes(np.array([{}, 1], dtype=object)), False),
    "npz": (npz_bytes(), False),
    "pickle": (pickle.dumps([1.0, 2.0]), False),
    "random bytes": (np.random.default_rng(0).bytes(64), False),
}


@pytest.mark.parametrize("name", sorted(INSPECTED))
def test_inspection_gives_the_np_load_verdict(tmp_path, monkeypatch, name):
    content, decided_by_header = INSPECTED[name]
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    expected = filecheck._load_verdict(str(path))
    loads = count_loads(monkeypatch)
    assert filecheck._inspect(str(path), len(content), {}) == expected
    assert loads.calls == (0 if decided_by_header else 1)


# --- bad-file policy -----------------------------------------------------------------------


def checked_frame(tmp_path: Path, kinds: list[str]) -> tuple[pd.DataFrame, FileCheckResult]:
    paths = make_files(tmp_path, kinds)
    frame = pd.DataFrame({"path": [p.name for p in paths], "label": range(len(paths))})
    return frame, check_files(paths, cache_file=tmp_path / "cache.sqlite")


def test_error_policy_names_first_bad_file_and_count(tmp_path):
    frame, result = checked_frame(tmp_path, ["good", "missing", "good", "nan", "corrupt"])
    with pytest.raises(DataError, match=r"^data file .*x1\.npy: file not found \(and 2 more\); on_bad_file: skip drops such rows$"):
        apply_bad_file_policy(frame, result, on_bad_file="error")
    (tmp_path / "two").mkdir()
    frame, result = checked_frame(tmp_path / "two", ["missing", "missing", "good"])
    with pytest.raises(DataError, match=r"x0\.npy: file not found \(and 1 more\); on_bad_file"):
        apply_bad_file_policy(frame, result, on_bad_file="error")
    frame, result = checked_frame(tmp_path, ["good", "nan"])
    with pytest.raises(DataError, match=r"x1\.npy: 1 non-finite value\(s\) \(NaN or inf\); on_bad_file"):
        apply_bad_file_policy(frame, result, on_bad_file="error")


@pytest.mark.parametrize(("n_bad", "tail"), [(3, "x3.npy (file not found)"), (4, " and 1 more"), (5, " and 2 more")])
def test_skip_policy_names_three_bad_files_and_counts_the_rest(tmp_path, n_bad, tail):
    frame, result = checked_frame(tmp_path, ["missing", "good", "nan", *["missing"] * (n_bad - 2)])
    with pytest.warns(UserWarning) as record:
        kept = apply_bad_file_policy(frame, result, on_bad_file="skip")
    message = str(record[0].message)
    assert message.startswith(f"skipping {n_bad} of {n_bad + 1} rows whose data file is bad: ")
    assert message.count(".npy (") == 3 and message.endswith(tail)
    assert "x0.npy (file not found), " in message and "x4.npy" not in message
    assert kept.index.tolist() == [1]


def test_policy_needs_the_check_of_this_frame(tmp_path):
    frame, result = checked_frame(tmp_path, ["good", "missing"])
    with pytest.raises(ValueError, match="^the file check covers 2 paths but the frame has 1 rows$"):
        apply_bad_file_policy(frame.iloc[:1], result, on_bad_file="skip")


def test_skip_policy_drops_bad_rows_with_a_warning(tmp_path):
    frame, result = checked_frame(tmp_path, ["good", "missing", "good", "nan"])
    with pytest.warns(UserWarning, match=r"skipping 2 of 4 rows .*x1\.npy \(file not found\), .*x3\.npy \(1 non-finite value\(s\) \(NaN or inf\)\)$"):
        kept = apply_bad_file_policy(frame, result, on_bad_file="skip")
    assert kept.index.tolist() == [0, 2]  # original index: still points into the path list


def test_policies_on_all_good_and_all_bad(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    frame, result = checked_frame(tmp_path / "good", ["good", "good"])
    assert apply_bad_file_policy(frame, result, on_bad_file="error") is frame
    frame, result = checked_frame(tmp_path / "bad", ["missing", "missing"])
    with pytest.raises(DataError, match="every one of the 2 data files is bad"):
        apply_bad_file_policy(frame, result, on_bad_file="skip")
    with pytest.raises(ConfigError, match="on_bad_file"):
        apply_bad_file_policy(frame, result, on_bad_file="ignore")


# --- paths ---------------------------------------------------------------------------------


def test_paths_resolve_against_root(tmp_path):
    frame = pd.DataFrame({"path": ["a.npy", "sub/b.npy", "sub/../c.npy", str(tmp_path / "d.npy")]})
    paths = resolve_paths(frame, path_column="path", root=tmp_path, allow_outside_root=False)
    assert paths == [tmp_path / "a.npy", tmp_path / "sub" / "b.npy", tmp_path / "c.npy", tmp_path / "d.npy"]


@pytest.mark.parametrize("escaping", ["../x.npy", "/etc/x.npy", "sub/../../x.npy", "../data2/x.npy", "../dat"])
def test_paths_escaping_root_are_refused_unless_allowed(tmp_path, escaping):
    root = tmp_path / "data"
    frame = pd.DataFrame({"path": ["ok.npy", escaping]})
    expected = rf"column 'path' row 1: path '{escaping}' is outside the data root {re.escape(str(root))}; paths"
    with pytest.raises(DataError, match=expected):
        resolve_paths(frame, path_column="path", root=root, allow_outside_root=False)
    paths = resolve_paths(frame, path_column="path", root=root, allow_outside_root=True)
    assert paths[1] == Path(os.path.normpath(root / escaping))


@pytest.mark.parametrize(("paths", "more"), [(["../a.npy", "../c.npy", "../d.npy"], 2), (["../a.npy", "../c.npy"], 1)])
def test_every_escaping_path_is_counted(tmp_path, paths, more):
    frame = pd.DataFrame({"path": ["ok.npy", paths[0], "b.npy", *paths[1:]]})
    with pytest.raises(DataError) as error:
        resolve_paths(frame, path_column="path", root=tmp_path / "data", allow_outside_root=False)
    assert str(error.value) == (
        f"labels column 'path' row 1: path '../a.npy' is outside the data root {tmp_path / 'data'} (and {more} more); "
        "paths must be relative to the labels CSV's folder or inside it (allow_outside_root allows others)"
    )


def test_under_the_filesystem_root_every_path_is_inside():
    frame = pd.DataFrame({"path": ["/srv/x.npy", "y.npy"]})
    assert resolve_paths(frame, path_column="path", root=Path("/"), allow_outside_root=False) == [
        Path("/srv/x.npy"),
        Path("/y.npy"),
    ]


def test_a_symlinked_folder_inside_the_root_stays_allowed(tmp_path):
    # Shared storage mounted into the data folder: the check is lexical, so it is inside.
    (tmp_path / "shared").mkdir()
    root = tmp_path / "data"
    root.mkdir()
    (root / "mounted").symlink_to(tmp_path / "shared")
    frame = pd.DataFrame({"path": ["mounted/x.npy"]})
    assert resolve_paths(frame, path_column="path", root=root, allow_outside_root=False) == [root / "mounted" / "x.npy"]


def test_a_symlinked_root_accepts_absolute_paths_into_its_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    root = tmp_path / "link"
    frame = pd.DataFrame({"path": [str(real / "x.npy"), "y.npy"]})
    assert resolve_paths(frame, path_column="path", root=root, allow_outside_root=False) == [real / "x.npy", root / "y.npy"]
    # A sibling whose name starts with the target's is still outside.
    frame = pd.DataFrame({"path": [str(tmp_path / "realm" / "x.npy")]})
    with pytest.raises(DataError, match="row 0: .* is outside the data root"):
        resolve_paths(frame, path_column="path", root=root, allow_outside_root=False)


def test_bad_path_values_and_missing_column(tmp_path):
    frame = pd.DataFrame({"path": ["a.npy", np.nan]})
    with pytest.raises(DataError, match=r"row 1: expected a file path, got nan"):
        resolve_paths(frame, path_column="path", root=tmp_path, allow_outside_root=False)
    with pytest.raises(DataError, match=r"^labels: path column 'file' not found; available columns: path, label$"):
        resolve_paths(frame.assign(label=1), path_column="file", root=tmp_path, allow_outside_root=False)
    with pytest.raises(DataError, match=r"row 0: expected a file path, got ' '$"):
        resolve_paths(pd.DataFrame({"path": [" "]}), path_column="path", root=tmp_path, allow_outside_root=False)


# --- packing -------------------------------------------------------------------------------


def test_pack_features_counts_float32_overflow_and_nullable_missing_values(tmp_path):
    big = pd.DataFrame({"x": [1.0, 1e39, 2.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error says it; numpy need not warn too
        with pytest.raises(DataError, match=r"^feature column 'x': 1 missing \(NaN\) or infinite value\(s\), first in row 1;"):
            pack_features(big, ["x"], out_path=tmp_path / "big.npy")
    nullable = pd.DataFrame({"n": pd.array([1, None, 3, None], dtype="Int64")})
    with pytest.raises(DataError, match=r"^feature column 'n': 2 missing \(NaN\) or infinite value\(s\), first in row 1;"):
        pack_features(nullable, ["n"], out_path=tmp_path / "nullable.npy")
    assert list(tmp_path.iterdir()) == []


def test_pack_arrays_round_trip_via_mmap(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good"] * 4)
    # The output goes through a temp file beside it (so that os.replace is atomic), in
    # folders made as needed.
    out_dir = tmp_path / "packed" / "by-key"
    beside = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: (beside.append(sorted(os.listdir(out_dir))), real_load(*a, **k))[1])
    out = pack_arrays(paths[::-1], out_path=out_dir / "arrays-k.npy", shape=SHAPE)
    monkeypatch.undo()
    assert len(beside) == 4 and all(len(names) == 1 for names in beside)
    assert re.fullmatch(r"\.arrays-k\.npy\..+\.tmp", beside[0][0]) and os.listdir(out_dir) == ["arrays-k.npy"]
    packed = np.load(out, mmap_mode="r")
    assert isinstance(packed, np.memmap) and packed.dtype == np.float32 and packed.shape == (4, *SHAPE)
    for i, path in enumerate(paths[::-1]):
        np.testing.assert_array_equal(packed[i], np.load(path))
    loads = count_loads(monkeypatch)
    assert pack_arrays(paths, out_path=out, shape=SHAPE) == out  # exists: nothing is redone
    assert loads.calls == 0


@pytest.mark.parametrize("kind", ["truncated", "pickle", "npz"])
def test_pack_arrays_refuses_what_is_not_one_array(tmp_path, kind):
    paths = make_files(tmp_path, ["good", kind])
    expected = {
        "truncated": lambda: f"cannot load as .npy: {numpy_load_error(paths[1])}",
        "pickle": lambda: "cannot load as .npy: not a .npy array file (no .npy header, or pickled objects)",
        "npz": lambda: "holds an .npz archive, expected a single array",
    }[kind]()
    with pytest.raises(DataError) as error:
        pack_arrays(paths, out_path=tmp_path / "packed.npy", shape=SHAPE)
    assert str(error.value) == f"data file {paths[1]}: {expected}"


def test_pack_arrays_refuses_wrong_shape_and_leaves_nothing(tmp_path):
    paths = make_files(tmp_path, ["good", "shape"])
    out_dir = tmp_path / "packed"
    with pytest.raises(DataError, match=r"x1\.npy: shape \(2, 5\), expected \(3, 20\)"):
        pack_arrays(paths, out_path=out_dir / "arrays.npy", shape=SHAPE)
    assert list(out_dir.iterdir()) == []


def test_pack_features_round_trip_and_errors(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": ["1", "2.5", "3"], "label": ["x", "y", "x"]})
    out = pack_features(frame, ["a", "b", "c"], out_path=tmp_path / "features.npy")
    packed = np.load(out, mmap_mode="r")
    np.testing.assert_array_equal(packed, np.array([[1, 0.5, 1], [2, 1.5, 2.5], [3, 2.5, 3]], np.float32))
    assert packed.dtype == np.float32

    with pytest.raises(DataError, match=r"feature column 'label': non-numeric value 'x' in row 0"):
        pack_features(frame, ["a", "label"], out_path=tmp_path / "f2.npy")
    frame.loc[1, "b"] = np.nan
    with pytest.raises(DataError, match=r"feature column 'b': 1 missing \(NaN\) or infinite .*first in row 1;"):
        pack_features(frame, ["a", "b"], out_path=tmp_path / "f3.npy")
    with pytest.raises(DataError, match=r"^features: column 'zz' not found; available columns: a, b, c, label$"):
        pack_features(frame, ["zz"], out_path=tmp_path / "f4.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]


# ---- a team's own reader (data.reader) ----------------------------------------------------


def _csv_record(path: Path, rows: np.ndarray) -> Path:
    pd.DataFrame(rows.T).to_csv(path, index=False)
    return path


def _read_csv_record(path: Path) -> np.ndarray:
    return pd.read_csv(path).to_numpy(np.float32).T


def test_a_readers_files_get_the_checks_npy_files_get(tmp_path):
    rng = np.random.default_rng(0)
    good = [_csv_record(tmp_path / f"r{i}.csv", rng.normal(size=(2, 16))) for i in range(4)]
    wide = _csv_record(tmp_path / "wide.csv", rng.normal(size=(3, 16)))
    holes = _csv_record(tmp_path / "holes.csv", np.full((2, 16), np.nan))
    missing = tmp_path / "gone.csv"
    result = filecheck.check_files_with_reader([*good, wide, holes, missing], _read_csv_record, "io:read")
    assert result.shape == (2, 16) and result.dtype == "float32"
    assert result.ok.tolist() == [True] * 4 + [False] * 3
    assert result.bad == [
        (wide, "shape (3, 16), expected (2, 16)"),
        (holes, "32 non-finite value(s) (NaN or inf)"),
        (missing, "file not found"),
    ]
    packed = filecheck.pack_arrays(good, out_path=tmp_path / "packed.npy", shape=(2, 16), reader=("io:read", _read_csv_record))
    np.testing.assert_array_equal(np.load(packed)[2], _read_csv_record(good[2]))


def test_a_reader_that_raises_marks_its_file_bad_and_one_returning_no_array_is_a_config_error(tmp_path):
    path = _csv_record(tmp_path / "r.csv", np.zeros((2, 4)))

    def broken(p: Path) -> np.ndarray:
        raise ValueError("row 3: bad float\nsecond line")

    result = filecheck.check_files_with_reader([path], broken, "io:broken")
    assert result.bad == [(path, "io:broken failed: ValueError: row 3: bad float")]
    for returned, what in (([1.0, 2.0], "a list"), (np.array(["a"]), "an array of dtype <U1"), (None, "a NoneType")):
        with pytest.raises(ConfigError) as error:
            filecheck.check_files_with_reader([path], lambda p, value=returned: value, "io:odd")
        assert str(error.value) == f"data.reader: io:odd returned {what} for {path}; expected a numeric numpy array"
