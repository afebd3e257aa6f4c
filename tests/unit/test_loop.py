"""The training loop without Ray: reporting, checkpoint resume, early stopping."""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from tests.ddp import run_ranks
from trial import loop
from trial.config import resolve
from trial.context import LocalContext
from trial.data import open_split, prepare_data
from trial.sampler import BalancedBatchSampler, composite_keys
from trial.sweep import sweep_job
from trial.loop import TrialJob, train_solver


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker")
    config = resolve(
        {
            "name": "w",
            "seed": 3,
            "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 160, "length": 256}, "root": str(root / "data")},
            "solver": {"name": "ecg_cnn1d", "params": {"epochs": 4, "batch_size": 16, "channels": 8, "dropout": 0.3}},
            "search": {"metric": "valid/loss", "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
            "storage": str(root / "runs"),
        }
    )
    return sweep_job(config, prepare_data(config)).with_trial_params({"lr": 3e-3})


@dataclass
class KeepEveryCheckpoint(LocalContext):
    """LocalContext that also keeps each epoch's checkpoint, not only the last."""

    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def report(self, metrics, checkpoint=None):
        super().report(metrics, checkpoint)
        self.checkpoints.append(dict(checkpoint))


def scripted_scores(monkeypatch, job: TrialJob, scores: list[float]) -> None:
    """Make each epoch's validation report the next of `scores` as the searched metric."""
    remaining = iter(scores)
    monkeypatch.setattr(loop, "evaluate", lambda *args, **kwargs: {job.metric: next(remaining)})


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize(
    ("mode", "score", "best", "expected"),
    [
        ("max", 0.8, 0.7, True),
        ("max", 0.7, 0.7, False),  # a tie keeps the earlier epoch
        ("max", 0.6, 0.7, False),
        ("min", 0.6, 0.7, True),
        ("min", 0.7, 0.7, False),
        ("min", 0.8, 0.7, False),
        ("min", 5.0, None, True),  # the first real score is the best so far
        ("max", float("nan"), 0.7, False),
        ("min", float("nan"), None, False),
    ],
)
def test_is_better_follows_the_mode(job, mode, score, best, expected):
    assert dataclasses.replace(job, mode=mode).is_better(score, best) is expected


@pytest.mark.parametrize(
    ("mode", "scores", "best_epoch"),
    [
        ("min", [0.5, 0.3, 0.4, 0.35], 2),
        ("max", [0.5, 0.3, 0.6, 0.55], 3),
        # A diverged first epoch (NaN) is kept only until a real score arrives.
        ("min", [float("nan"), 0.5, 0.2, 0.3], 3),
        ("max", [float("nan"), float("nan"), 0.1, 0.05], 3),
    ],
)
def test_the_best_epochs_weights_are_kept_for_the_final_evaluation(job, monkeypatch, mode, scores, best_epoch):
    job = dataclasses.replace(job, mode=mode)
    scripted_scores(monkeypatch, job, scores)
    context = KeepEveryCheckpoint(root_seed=job.root_seed)
    train_solver(job, context)
    final = context.last_checkpoint
    assert final["best_score"] == scores[best_epoch - 1]
    assert same_weights(final["best_model"], context.checkpoints[best_epoch - 1]["model"])
    # Each epoch's weights differ, so the check above tells the epochs apart.
    assert not same_weights(final["best_model"], context.checkpoints[best_epoch % 4]["model"])


def test_a_run_of_nan_scores_keeps_the_first_epochs_weights(job, monkeypatch):
    scripted_scores(monkeypatch, job, [float("nan")] * 4)
    context = KeepEveryCheckpoint(root_seed=job.root_seed)
    train_solver(job, context)
    assert context.last_checkpoint["best_score"] is None
    assert same_weights(context.last_checkpoint["best_model"], context.checkpoints[0]["model"])


@pytest.mark.parametrize(
    ("mode", "scores", "stopped_at"),
    [
        ("min", [float("nan"), 0.5, 0.6, 0.7, 0.8, 0.9], 4),  # NaN, then 0.5 counts as an improvement
        ("max", [0.5, 0.4, 0.6, 0.5, 0.45, 0.9], 5),
        ("min", [0.5, 0.4, 0.3, 0.2, 0.1, 0.0], None),
    ],
)
def test_early_stopping_follows_the_mode_and_patience(job, monkeypatch, mode, scores, stopped_at):
    job = dataclasses.replace(job, mode=mode).with_trial_params({"epochs": 6, "patience": 2})
    scripted_scores(monkeypatch, job, scores)
    context = LocalContext(root_seed=job.root_seed)
    train_solver(job, context)
    epochs = stopped_at or 6
    assert [r["epoch"] for r in context.reports] == list(range(1, epochs + 1))
    assert [r["early_stopped"] for r in context.reports] == [0] * (epochs - 1) + [int(stopped_at is not None)]
    assert context.last_checkpoint["early_stopping"]["bad_epochs"] == (2 if stopped_at else 0)


def test_a_resumed_trial_keeps_its_early_stopping_count(job, monkeypatch):
    # Patience 2, and epoch 2 was already one epoch without improvement: a resumed trial
    # must stop after epoch 3, as the uninterrupted one does.
    scores = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    job = job.with_trial_params({"epochs": 6, "patience": 2})
    scripted_scores(monkeypatch, job, scores)
    whole = LocalContext(root_seed=job.root_seed)
    train_solver(job, whole)
    assert [r["epoch"] for r in whole.reports] == [1, 2, 3]

    scripted_scores(monkeypatch, job, scores[:2])
    first = LocalContext(root_seed=job.root_seed)
    train_solver(job.with_trial_params({"epochs": 2}), first)
    scripted_scores(monkeypatch, job, scores[2:])
    resumed = LocalContext(root_seed=job.root_seed, last_checkpoint=first.last_checkpoint)
    train_solver(job, resumed)
    assert [(r["epoch"], r["early_stopped"]) for r in resumed.reports] == [(3, 1)]


def test_reports_every_epoch_with_seeds_and_a_checkpoint(job):
    context = LocalContext(root_seed=job.root_seed)
    train_solver(job, context)
    assert [r["epoch"] for r in context.reports] == [1, 2, 3, 4]
    assert all(math.isfinite(r["valid/loss"]) and math.isfinite(r["train/loss"]) for r in context.reports)
    assert (context.reports[0]["seeds"], context.reports[0]["nodes"]) == ("0:3", "0:local")
    assert context.last_checkpoint["epoch"] == 4 and "best_model" in context.last_checkpoint


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(job):
    whole = LocalContext(root_seed=job.root_seed)
    train_solver(job, whole)

    first_half = LocalContext(root_seed=job.root_seed)
    train_solver(job.with_trial_params({"epochs": 2}), first_half)
    resumed = LocalContext(root_seed=job.root_seed, last_checkpoint=first_half.last_checkpoint)
    train_solver(job, resumed)

    assert [r["epoch"] for r in resumed.reports] == [3, 4]
    for key in ("valid/loss", "train/loss", "valid/auroc"):
        assert resumed.reports[-1][key] == pytest.approx(whole.reports[-1][key], rel=1e-6, abs=1e-9)


def test_early_stopping_ends_the_trial_after_patience_epochs(job):
    # min_delta this large means no epoch ever counts as an improvement.
    context = LocalContext(root_seed=job.root_seed)
    train_solver(job.with_trial_params({"epochs": 10, "patience": 2, "min_delta": 100.0}), context)
    assert [r["epoch"] for r in context.reports] == [1, 2, 3]
    assert [r["early_stopped"] for r in context.reports] == [0, 0, 1]


def test_trial_params_override_the_solver_params_and_are_kept_apart(job):
    trial = job.with_trial_params({"lr": 0.02, "epochs": 2})
    assert trial.trial_params == {"lr": 0.02, "epochs": 2}
    assert dict(trial.params) == {**dict(job.params), "lr": 0.02, "epochs": 2}
    assert type(trial.params) is type(job.params)
    assert trial.make_solver().params.lr == 0.02


def test_the_final_evaluation_of_the_best_weights_repeats_the_best_epochs_score(job):
    # metric valid/loss, mode min: the model rebuilt from `best_model` after the sweep must
    # score what the best epoch reported.
    assert (job.metric, job.mode) == ("valid/loss", "min")
    context = LocalContext(root_seed=job.root_seed)
    train_solver(job, context)
    losses = [r["valid/loss"] for r in context.reports]
    assert len(set(losses)) == 4
    model = loop.load_trained_model(job, context.last_checkpoint["best_model"])
    valid = open_split(job.data, "valid")
    final = loop.evaluate(model, valid, torch.device("cpu"), batch_size=job.params.batch_size, prefix="valid")
    assert final["valid/loss"] == pytest.approx(min(losses), rel=1e-6)


def test_the_loop_hands_training_labels_and_steps_per_epoch_to_the_trainer(job, monkeypatch):
    # class_weights need the training split's labels; onecycle needs the batches per epoch.
    seen = {}
    real_init = loop.Trainer.__init__

    def init(self, solver, model, **kwargs):
        seen.update(kwargs)
        real_init(self, solver, model, **kwargs)
        seen["trainer"] = self

    monkeypatch.setattr(loop.Trainer, "__init__", init)
    trial = job.with_trial_params({"epochs": 1, "class_weights": True, "lr_scheduler": "onecycle"})
    train_solver(trial, LocalContext(root_seed=job.root_seed))
    train = open_split(job.data, "train")
    assert (seen["train_labels"] == train.y).all() and seen["num_classes"] == job.data.num_classes == 2
    assert seen["data_kind"] == "signal"
    # Balanced batches of 16 over the training split's epoch plan.
    steps = len(loop.train_sampler(trial, train, 16, num_replicas=1))
    assert seen["steps_per_epoch"] == steps > 1
    assert seen["trainer"].scheduler.total_steps == steps


def test_train_sampler_balances_the_configured_columns_for_each_rank(job):
    train = open_split(job.data, "train")
    assert job.data.balance == ("label", "age_group")
    keys = composite_keys(train.frame, job.data.balance)
    default = list(loop.train_sampler(job, train, 16, num_replicas=1))
    assert default == list(BalancedBatchSampler(keys, 16, seed=job.root_seed))
    n_keys = len(set(keys))
    assert n_keys > 2
    for batch in default:
        counts = Counter(keys[batch])
        assert len(counts) == n_keys and max(counts.values()) - min(counts.values()) <= 1
    for rank, drop_last in [(0, True), (1, False)]:
        sampler = loop.train_sampler(job, train, 16, num_replicas=2, rank=rank, drop_last=drop_last)
        expected = BalancedBatchSampler(keys, 16, num_replicas=2, rank=rank, seed=job.root_seed, drop_last=drop_last)
        assert list(sampler) == list(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU on a machine without CUDA")
def test_a_gpu_trial_on_a_machine_without_cuda_trains_on_the_cpu(job):
    assert loop._device(dataclasses.replace(job, use_gpu=True)) == torch.device("cpu")


def test_a_gpu_trial_trains_on_the_gpu_ray_gave_its_worker(job, monkeypatch):
    # Ray sets CUDA_VISIBLE_DEVICES per worker: the worker's one GPU is always cuda:0.
    # (Naming the device needs no GPU; only moving tensors onto it does.)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loop._device(dataclasses.replace(job, use_gpu=True)) == torch.device("cuda", 0)
    assert loop._device(dataclasses.replace(job, use_gpu=False)) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="resumes a GPU checkpoint on a machine without CUDA")
def test_a_checkpoint_from_a_gpu_machine_resumes_on_a_cpu_only_one():
    cpu_state = torch.get_rng_state()
    torch.manual_seed(99)
    loop._set_rng_state({"cpu": cpu_state, "cuda": [torch.zeros(16, dtype=torch.uint8)]})
    assert torch.equal(torch.get_rng_state(), cpu_state)


@pytest.mark.parametrize("dataset, solver", [("breast_cancer", "tabular_mlp"), ("digits", "image_cnn")])
def test_unbalanced_builtin_datasets_train(tmp_path, dataset, solver):
    # No data.balance: the sampler shuffles plainly.
    config = resolve(
        {
            "name": dataset,
            "data": {"dataset": dataset, "root": str(tmp_path / "data")},
            "solver": {"name": solver, "params": {"epochs": 2, "batch_size": 64}},
            "search": {"metric": "valid/accuracy", "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
            "storage": str(tmp_path / "runs"),
        }
    )
    prepared = prepare_data(config)
    assert prepared.balance is None
    context = LocalContext(root_seed=0)
    train_solver(sweep_job(config, prepared).with_trial_params({"lr": 3e-3}), context)
    assert [r["epoch"] for r in context.reports] == [1, 2]
    assert context.reports[-1]["valid/accuracy"] > 0.5


def _train_rank(rank: int, world_size: int, job: TrialJob, out) -> None:
    context = LocalContext(root_seed=job.root_seed, world_rank=rank, world_size=world_size)
    train_solver(job, context)
    torch.save(context.reports, out / f"rank{rank}.pt")


@pytest.mark.parametrize(
    "fine_tuning", [{}, {"freeze": ["0"], "unfreeze_after": 1}], ids=["all-trained", "first-conv-unfrozen-at-epoch-1"]
)
def test_two_ranks_train_one_ddp_model_on_disjoint_batches(job, tmp_path, fine_tuning):
    # Two real processes in one gloo group, as a TorchTrainer worker group runs them. No
    # dropout or augmentation: two ranks fed the same batches would report the same loss.
    # A layer unfrozen mid-training must be synced from then on too (DDP is built anew):
    # else the ranks' models drift apart and score differently in the second epoch.
    job = job.with_trial_params({"epochs": 2, "dropout": 0.0, **fine_tuning})
    run_ranks(_train_rank, 2, job, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    # DDP keeps one model: both ranks score it alike every epoch (and so stop alike) ...
    for name in ("valid/loss", "valid/auroc"):
        assert [r[name] for r in ranks[0]] == pytest.approx([r[name] for r in ranks[1]], rel=1e-5)
    # ... trained on each rank's own half of the epoch's batches.
    assert all(a["train/loss"] != b["train/loss"] for a, b in zip(*ranks))
    assert ranks[0][0]["seeds"] == ranks[1][0]["seeds"] == "0:3,1:1004"


def test_pretrained_weights_travel_with_the_job_to_workers_without_the_file(job, tmp_path):
    # The driver reads init_from once; a worker on another machine has only the job.
    torch.manual_seed(7)
    source = job.make_solver().build_model(job.data.input_shape, job.data.num_classes)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    params = job.solver.parse_params({**dict(job.params), "init_from": str(path), "epochs": 1, "lr": 1e-9})
    tuned = dataclasses.replace(job, params=params, pretrained=loop.read_weights(str(path)))
    path.unlink()
    context = LocalContext(root_seed=job.root_seed)
    train_solver(tuned, context)
    trained = context.last_checkpoint["model"]
    for key, value in source.state_dict().items():
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.allclose(trained[key], value, atol=1e-6), key
    # A trial's searched values keep the weights; a searched init_from is read where it runs.
    assert tuned.with_trial_params({"lr": 1e-3}).pretrained is tuned.pretrained
    assert tuned.with_trial_params({"init_from": str(tmp_path / "other.pt")}).pretrained is None
