"""File check: verdicts and reasons, the (size, mtime) cache, bad-file policies, root confinement, packing."""
from __future__ import annotations

import io
import os
import pickle
import sqlite3
import tempfile
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
    "corrupt": "cannot load as .npy",
    "shape": "shape (2, 5), expected (3, 20)",
    "nan": "1 non-finite value(s)",
    "dtype": "dtype float64, expected float32",
    "text": "expected a numeric",
}


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
    assert EXPECTED_REASON[kind] in reason
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
        for (_, reason), kind in zip(result.bad, [k for k in kinds if k != "good"]):
            assert EXPECTED_REASON[kind] in reason


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
    assert EXPECTED_REASON["corrupt"] in corrupt_reason and EXPECTED_REASON["nan"] in nan_reason
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
    assert check_files(paths, cache_file=cache).bad == []
    assert inspections.calls == 2  # the two oldest lists were dropped


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
    with pytest.raises(DataError, match=r"^data file .*x1\.npy: file not found \(and 2 more\)"):
        apply_bad_file_policy(frame, result, on_bad_file="error")


def test_skip_policy_drops_bad_rows_with_a_warning(tmp_path):
    frame, result = checked_frame(tmp_path, ["good", "missing", "good", "nan"])
    with pytest.warns(UserWarning, match=r"skipping 2 of 4 rows .*x1\.npy \(file not found\).*x3\.npy"):
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


@pytest.mark.parametrize("escaping", ["../x.npy", "/etc/x.npy", "sub/../../x.npy"])
def test_paths_escaping_root_are_refused_unless_allowed(tmp_path, escaping):
    root = tmp_path / "data"
    frame = pd.DataFrame({"path": ["ok.npy", escaping]})
    with pytest.raises(DataError, match=rf"column 'path' row 1: path '{escaping}' is outside the data root"):
        resolve_paths(frame, path_column="path", root=root, allow_outside_root=False)
    paths = resolve_paths(frame, path_column="path", root=root, allow_outside_root=True)
    assert paths[1] == Path(os.path.normpath(root / escaping))


def test_bad_path_values_and_missing_column(tmp_path):
    frame = pd.DataFrame({"path": ["a.npy", np.nan]})
    with pytest.raises(DataError, match=r"row 1: expected a file path, got nan"):
        resolve_paths(frame, path_column="path", root=tmp_path, allow_outside_root=False)
    with pytest.raises(DataError, match=r"'file' not found; available columns: path"):
        resolve_paths(frame, path_column="file", root=tmp_path, allow_outside_root=False)


# --- packing -------------------------------------------------------------------------------


def test_pack_arrays_round_trip_via_mmap(tmp_path, monkeypatch):
    paths = make_files(tmp_path, ["good"] * 4)
    out = pack_arrays(paths[::-1], out_path=tmp_path / "packed" / "arrays-k.npy", shape=SHAPE)
    packed = np.load(out, mmap_mode="r")
    assert isinstance(packed, np.memmap) and packed.dtype == np.float32 and packed.shape == (4, *SHAPE)
    for i, path in enumerate(paths[::-1]):
        np.testing.assert_array_equal(packed[i], np.load(path))
    loads = count_loads(monkeypatch)
    assert pack_arrays(paths, out_path=out, shape=SHAPE) == out  # exists: nothing is redone
    assert loads.calls == 0


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
    with pytest.raises(DataError, match=r"'zz' not found"):
        pack_features(frame, ["zz"], out_path=tmp_path / "f4.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]
