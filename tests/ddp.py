"""Real multi-process gloo groups for unit tests: what a TorchTrainer worker group runs, without Ray."""
from __future__ import annotations

import socket
import weakref
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.distributed.nn  # noqa: F401  (must precede init_process_group: see run_rank)
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(fn: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run `fn(rank, world_size, *args)` in `world_size` spawned processes sharing one gloo group."""
    mp.spawn(run_rank, args=(world_size, _free_port(), fn, args), nprocs=world_size, join=True)


def run_rank(rank: int, world_size: int, port: int, fn: Callable[..., None], args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    group = weakref.ref(dist.group.WORLD)
    try:
        fn(rank, world_size, *args)  # DDP, which holds the group, is gone once this returns
    finally:
        dist.destroy_process_group()
    # destroy_process_group only drops c10d's own references (gloo's shutdown does nothing):
    # the group and its gloo threads die with the last reference. One kept past this point
    # leaves those threads running into interpreter shutdown, where one taking the GIL to
    # free a tensor aborts the rank (SIGABRT, "terminate called without an active exception").
    # torch.distributed.nn, which DDP imports on first use, keeps the group in its functions'
    # `group=group.WORLD` defaults if imported after init_process_group: hence its import above.
    assert group() is None, "the process group outlived destroy_process_group"
