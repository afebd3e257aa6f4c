"""One way to seed a run, and per-rank seeds derived from the root seed.

A trial has one root seed (config ``seed``). Each of its workers seeds from
(root seed, world rank) rather than from the root seed itself: workers that augment
or generate data would otherwise draw identical samples on every rank, wasting the
extra workers, while the run as a whole stays reproducible. Model initialisation
still agrees across ranks because DDP broadcasts rank 0's parameters and buffers
when it wraps the model; only dropout, augmentation and sampling streams differ.
"""
from __future__ import annotations

import numbers
import os
import random

import numpy as np
import torch

_SEED_LIMIT = 2**32  # numpy's global seeding accepts [0, 2**32)
_RANK_STRIDE = 1001  # spreads ranks' seeds apart; odd, so distinct ranks never collide mod 2**32


def worker_seed(root_seed: int, world_rank: int) -> int:
    """The seed of worker `world_rank`: ``(root_seed + 1001 * world_rank) mod 2**32``.

    Rank 0 keeps the root seed, so a one-worker trial seeds exactly as configured
    (root 42 gives 42 on rank 0, 1043 on rank 1). Distinct ranks (below 2**32) get
    distinct seeds, and the same (root seed, rank) always gets the same one.
    """
    if not isinstance(root_seed, numbers.Integral) or isinstance(root_seed, bool):
        raise ValueError(f"root_seed must be an integer, got {root_seed!r}")
    if not isinstance(world_rank, numbers.Integral) or isinstance(world_rank, bool) or world_rank < 0:
        raise ValueError(f"world_rank must be an integer >= 0, got {world_rank!r}")
    return (int(root_seed) + _RANK_STRIDE * int(world_rank)) % _SEED_LIMIT


def repeat_seed(root_seed: int, repeat: int) -> int:
    """The root seed of repeat `repeat` of a config (search.repeats): repeat 0 keeps the
    root seed; later ones are drawn from NumPy's SeedSequence of (root seed, repeat), so
    they land far from the root seed and from its workers' seeds (root + 1001 * rank)."""
    if not isinstance(repeat, numbers.Integral) or isinstance(repeat, bool) or repeat < 0:
        raise ValueError(f"repeat must be an integer >= 0, got {repeat!r}")
    if repeat == 0:
        return int(root_seed) % _SEED_LIMIT
    return int(np.random.SeedSequence([int(root_seed), int(repeat)]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and every CUDA
    device), and set ``PYTHONHASHSEED`` for child processes.

    Call it once per worker, first thing, with ``worker_seed(root_seed, rank)``.
    ``PYTHONHASHSEED`` cannot change hashing in the running interpreter (that is
    fixed at start-up); it is set so that processes this one starts (DataLoader
    workers started by spawn, subprocesses) hash strings reproducibly.
    """
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    # manual_seed also seeds every CUDA device (lazily, if CUDA is ever initialised),
    # so CPU-only and GPU machines take the same path.
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def dataloader_worker_init(worker_id: int) -> None:
    """`DataLoader` ``worker_init_fn``: seed `random` and NumPy from the worker's torch seed.

    A DataLoader sets each worker's torch seed to ``base_seed + worker_id``, where
    ``base_seed`` is drawn from the loader's ``generator`` (see `torch_generator`).
    Deriving `random` and NumPy from it gives every worker its own streams (forked
    workers would otherwise inherit one identical NumPy state) that are still
    reproducible from the worker's seed. Recent PyTorch seeds both itself; this
    hook makes the guarantee explicit rather than dependent on the torch version.
    `worker_id` is unused: it is already part of ``torch.initial_seed()``.
    """
    seed = torch.initial_seed() % _SEED_LIMIT
    random.seed(seed)
    np.random.seed(seed)


def torch_generator(seed: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `seed`, for a DataLoader's ``generator``.

    The DataLoader draws its workers' base seed (and any shuffling) from it, so a
    loader built with ``torch_generator(worker_seed(root, rank))`` is reproducible
    and differs between ranks, independent of the global torch state.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
