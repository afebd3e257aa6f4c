"""A team's own augmentation: `fn(x, rng) -> x` over a batch, drawing from trial's generator."""
from __future__ import annotations

import torch


def time_mask(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Zero one random stretch of up to 10% of each recording, all leads together
    (an electrode losing contact for a moment)."""
    n, _, length = x.shape
    span = max(1, length // 10)
    widths = torch.randint(0, span + 1, (n, 1), generator=rng)
    starts = (torch.rand(n, 1, generator=rng) * (length - widths)).long()
    positions = torch.arange(length).unsqueeze(0)
    keep = ~((positions >= starts) & (positions < starts + widths))
    return x * keep.unsqueeze(1).to(device=x.device, dtype=x.dtype)
