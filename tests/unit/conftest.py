"""Unit tests train tiny models: one torch thread each."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    # With two threads on the shared 2-core CI machine, thread synchronisation costs
    # tens of times more than these models' arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
