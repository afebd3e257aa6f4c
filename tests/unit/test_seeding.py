"""Seeding: per-rank seeds, reproducibility, DataLoader workers, and a real 2-process DDP run."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tests.ddp import run_ranks
from trial.context import LocalContext
from trial.seeding import dataloader_worker_init, seed_everything, torch_generator, worker_seed


def test_worker_seed_is_stable_and_distinct_per_rank():
    assert [worker_seed(42, rank) for rank in range(3)] == [42, 1043, 2044]
    assert len({worker_seed(7, rank) for rank in range(4096)}) == 4096
    assert worker_seed(2**32 - 1, 1) == 1000  # wraps into numpy's seed range
    assert worker_seed(np.int64(42), np.int64(1)) == 1043


@pytest.mark.parametrize(
    ("root", "rank", "message"),
    [
        (42, -1, "world_rank must be an integer >= 0, got -1"),
        (42, 1.5, "world_rank must be an integer >= 0, got 1.5"),
        (42, True, "world_rank must be an integer >= 0, got True"),
        (4.2, 0, "root_seed must be an integer, got 4.2"),
        (False, 0, "root_seed must be an integer, got False"),
    ],
)
def test_worker_seed_rejects_bad_input(root, rank, message):
    with pytest.raises(ValueError) as error:
        worker_seed(root, rank)
    assert str(error.value) == message


def test_worker_seed_takes_any_root_including_negative_and_rank_zero():
    # Rank 0 is valid and keeps the root; a negative root wraps into [0, 2**32) like any other.
    assert worker_seed(0, 0) == 0
    assert worker_seed(-1, 0) == 2**32 - 1
    assert worker_seed(-1, 1) == 1000
    assert isinstance(worker_seed(np.int64(5), np.int64(2)), int)


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_python_numpy_and_torch_reproducible(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seed_everything(1043)
    first = _draws()
    seed_everything(1043)
    assert _draws() == first
    seed_everything(42)
    assert _draws() != first
    assert os.environ["PYTHONHASHSEED"] == "42"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, True])
def test_seed_everything_rejects_seeds_numpy_cannot_take(seed):
    with pytest.raises(ValueError) as error:
        seed_everything(seed)
    assert str(error.value) == f"seed must be an integer in [0, 2**32), got {seed!r}"


@pytest.mark.parametrize("seed", [0, 2**32 - 1, np.int64(7)])
def test_seed_everything_seeds_each_generator_as_its_own_seed_call_would(monkeypatch, seed):
    # The edges of numpy's range are accepted, and every generator is seeded with `seed`
    # itself: the draws match those of generators seeded independently here.
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seed_everything(seed)
    drawn = _draws()
    assert drawn[0] == random.Random(int(seed)).random()
    assert drawn[1] == np.random.RandomState(int(seed)).rand()
    assert drawn[2] == torch.rand(3, generator=torch.Generator().manual_seed(int(seed))).tolist()
    assert os.environ["PYTHONHASHSEED"] == str(int(seed))


def test_dataloader_worker_init_seeds_random_and_numpy_from_the_torch_seed():
    # In a worker the torch seed is base_seed + worker_id, often past 2**32: reduced mod 2**32.
    for torch_seed in (123, 2**32 + 5):
        torch.manual_seed(torch_seed)
        dataloader_worker_init(0)
        expected = torch_seed % 2**32
        assert random.random() == random.Random(expected).random()
        assert float(np.random.rand()) == np.random.RandomState(expected).rand()


def test_torch_generator_is_independent_of_global_state():
    first = torch.randperm(20, generator=torch_generator(5))
    assert torch_generator(5).initial_seed() == 5
    torch.manual_seed(0)
    assert torch.equal(torch.randperm(20, generator=torch_generator(5)), first)
    assert not torch.equal(torch.randperm(20, generator=torch_generator(6)), first)


class _NumpyDraws(torch.utils.data.Dataset):
    """Each item is a draw from NumPy's global generator, as augmentations make."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> float:
        return float(np.random.rand())


def test_dataloader_workers_draw_distinct_reproducible_streams():
    def run(seed: int) -> list[float]:
        loader = torch.utils.data.DataLoader(
            _NumpyDraws(),
            batch_size=2,
            num_workers=2,
            worker_init_fn=dataloader_worker_init,
            generator=torch_generator(seed),
            multiprocessing_context="fork",
        )
        return [x for batch in loader for x in batch.tolist()]

    first = run(1)
    assert run(1) == first
    assert run(2) != first
    # Worker 0 made the first batch, worker 1 the second: their streams differ.
    assert first[:2] != first[2:]


def _gather_draws(ctx: LocalContext) -> dict[str, list[torch.Tensor]]:
    """Every rank's initial parameters, DDP's parameters, a dropout mask and a draw."""
    # Seeded as train_solver seeds a TorchTrainer worker: from its context's seed.
    seed_everything(ctx.seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Dropout(0.5), torch.nn.Linear(32, 1))
    before = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    ddp = DistributedDataParallel(model)
    ddp.train()
    tensors = {
        "before": before,
        "after": torch.nn.utils.parameters_to_vector(ddp.module.parameters()).detach(),
        "dropout_mask": (ddp.module[1](torch.ones(256)) != 0).float(),
        "rand": torch.rand(8),
    }
    gathered = {}
    for name, tensor in tensors.items():
        gathered[name] = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
        dist.all_gather(gathered[name], tensor)
    return gathered


def _ddp_rank(rank: int, world_size: int, out: Path) -> None:
    gathered = _gather_draws(LocalContext(root_seed=42, world_rank=rank, world_size=world_size))
    if rank == 0:
        torch.save(gathered, out)


def test_ddp_ranks_share_parameters_but_not_random_streams(tmp_path):
    out = tmp_path / "gathered.pt"
    run_ranks(_ddp_rank, 2, out)
    gathered = torch.load(out)
    # Ranks seed differently, so their own initialisations differ ...
    assert not torch.equal(*gathered["before"])
    # ... yet DDP broadcasts rank 0's parameters at construction.
    assert torch.equal(*gathered["after"])
    assert torch.equal(gathered["after"][0], gathered["before"][0])
    # Dropout and other random draws stay rank-specific.
    assert not torch.equal(*gathered["dropout_mask"])
    assert not torch.equal(*gathered["rand"])
