"""The solver's view of its trial: per-rank seeds, report and restore, with and without Ray.

RayContext is checked here with Ray's real Checkpoint class and a recording report
function; `for_tune` and `for_train` (which read the rank from a running Tune trial or
Train worker) are the integration tests' to check: tests/integration/test_two_workers.py
(ranks 0 and 1 seeded 42 and 1043) and every sweep test (Tune's report and restore).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.serialization
from ray.train import Checkpoint

from trial.context import CHECKPOINT_FILE, LocalContext, RayContext, load_state, save_state


def test_save_state_writes_one_file_that_load_state_reads_back(tmp_path: Path):
    state = {"epoch": 3, "model": {"w": torch.arange(4.0)}, "best": 0.25}
    path = save_state(state, tmp_path)
    assert path == tmp_path / "state.pt" == tmp_path / CHECKPOINT_FILE
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    loaded = load_state(tmp_path)
    assert loaded.keys() == state.keys() and (loaded["epoch"], loaded["best"]) == (3, 0.25)
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))


def test_load_state_maps_a_gpu_checkpoint_onto_the_cpu(tmp_path: Path, monkeypatch):
    # Written as a GPU worker writes it: its tensors' storages tagged cuda:0.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    save_state({"w": torch.ones(2)}, tmp_path)
    monkeypatch.undo()
    loaded = load_state(tmp_path)
    assert loaded["w"].device == torch.device("cpu") and torch.equal(loaded["w"], torch.ones(2))


class _Code:
    """Anything but plain data: unpickling it would run this module's code."""


def test_load_state_refuses_a_checkpoint_holding_code(tmp_path: Path, monkeypatch):
    # Even where the environment turns torch's own weights-only default off.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.save({"hook": _Code()}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state(tmp_path)


@pytest.mark.parametrize(("rank", "seed"), [(0, 42), (1, 1043), (3, 3045)])
def test_a_context_seeds_from_its_root_seed_and_rank(rank, seed):
    context = LocalContext(root_seed=42, world_rank=rank, world_size=4)
    assert context.seed == seed
    assert (context.world_size, context.node_id) == (4, "local")
    assert LocalContext(root_seed=7).seed == 7 and LocalContext(root_seed=7).world_size == 1


def test_local_context_keeps_every_report_and_the_last_checkpoint():
    context = LocalContext(root_seed=0)
    assert context.restore() is None
    metrics = {"valid/loss": 0.5}
    context.report(metrics, checkpoint={"epoch": 1})
    metrics["valid/loss"] = 9.0  # the caller's dict is copied, not kept
    context.report({"valid/loss": 0.4})  # no checkpoint: the last one stays
    assert context.reports == [{"valid/loss": 0.5}, {"valid/loss": 0.4}]
    assert context.restore() == {"epoch": 1}
    context.report({"valid/loss": 0.3}, checkpoint={"epoch": 3})
    assert context.restore() == {"epoch": 3}


def test_ray_context_restores_the_reported_state_or_nothing(tmp_path: Path):
    save_state({"epoch": 4, "w": torch.zeros(2)}, tmp_path)
    context = RayContext(root_seed=1, get_checkpoint_fn=lambda: Checkpoint.from_directory(str(tmp_path)))
    restored = context.restore()
    assert restored["epoch"] == 4 and torch.equal(restored["w"], torch.zeros(2))
    assert RayContext(root_seed=1, get_checkpoint_fn=lambda: None).restore() is None


def test_ray_context_report_leaves_no_checkpoint_folder_behind(monkeypatch, tmp_path: Path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folders = []
    context = RayContext(
        root_seed=0,
        report_fn=lambda metrics, checkpoint: folders.append(Path(checkpoint.path)),
        checkpoint_cls=Checkpoint,
    )
    context.report({"valid/loss": 1.0}, checkpoint={"epoch": 1})
    assert len(folders) == 1 and folders[0].parent == tmp_path and folders[0].name.startswith("trial-ckpt-")
    assert not folders[0].exists()


def test_ray_context_reports_the_metrics_with_or_without_a_checkpoint():
    reported = []
    context = RayContext(
        root_seed=0,
        report_fn=lambda metrics, checkpoint=None: reported.append((metrics, checkpoint)),
        checkpoint_cls=Checkpoint,
    )
    metrics = {"valid/loss": 1.0, "epoch": 1}
    context.report(metrics)
    context.report(metrics, checkpoint={"epoch": 1})
    assert [m for m, _ in reported] == [metrics, metrics] and reported[0][1] is None
    assert isinstance(reported[1][1], Checkpoint)
    # Ray keeps what it is handed: the context hands over a copy, not the loop's own dict.
    assert all(m is not metrics for m, _ in reported)
