"""Training-time augmentations, named per data kind, and batch mixing (mixup, cutmix).

An augmentation is `fn(x, rng) -> x`: it maps a batch [N, *sample_shape] to a new batch
of the same shape and device, drawing one random transform per sample from `rng`, a CPU
`torch.Generator` the training loop seeds per worker rank and keeps in its checkpoints:
workers of one trial draw different transforms, and a run repeats under the same seed.
A team's own augmentations take the same form. Mixing maps (batch, class indices) to
(mixed batch, soft targets [N, num_classes]) and draws from torch's global generator.
None of it runs at evaluation.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# Strengths are fixed rather than params: each name is one well-tested recipe, and the
# sweep searches one or two params at a time, which should be the ones that matter.
_NOISE = 0.05
"""Gaussian noise std, as a fraction of the signal lead's (or tabular feature's) std."""
_SCALING = 0.1
"""Std of the log of the per-lead amplitude factor (about +-10%)."""
_SIGNAL_SHIFT = 0.1
"""Largest circular time shift, as a fraction of the recording length."""
_IMAGE_SHIFT = 0.1
"""Largest translation, as a fraction of the image side (at least one pixel)."""
_ROTATE_DEGREES = 15.0
"""Largest rotation either way."""


def _randn(shape: tuple[int, ...] | torch.Size, rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=rng).to(device=like.device, dtype=like.dtype)


def _randint(low: int, high: int, shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=rng).to(like.device)


def signal_noise(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise scaled to each lead's own std (signals are rarely normalised)."""
    return x + _NOISE * x.std(dim=-1, keepdim=True, unbiased=False) * _randn(x.shape, rng, x)


def signal_scaling(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Multiply each lead of each sample by a log-normal factor around 1 (electrode gain)."""
    return x * torch.exp(_SCALING * _randn((*x.shape[:-1], 1), rng, x))


def signal_shift(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Roll each sample in time by up to 10% of its length, all leads together.

    Circular rather than zero-padded: recordings such as ECGs are quasi-periodic, and
    padding would teach the model that flat ends mean something.
    """
    n, _, length = x.shape
    reach = max(1, int(length * _SIGNAL_SHIFT))
    shifts = _randint(-reach, reach + 1, (n, 1), rng, x)
    index = (torch.arange(length, device=x.device) - shifts) % length
    return x.gather(-1, index.unsqueeze(1).expand_as(x))


def image_shift(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Translate each image by whole pixels, up to 10% of each side (at least 1), zero-filled."""
    n, _, height, width = x.shape
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    for axis, size in ((0, width), (1, height)):
        reach = max(1, round(size * _IMAGE_SHIFT))
        pixels = _randint(-reach, reach + 1, (n,), rng, x)
        # In grid_sample's [-1, 1] coordinates (align_corners=False) one pixel is 2/size;
        # whole-pixel offsets land on pixel centres, so nearest sampling copies exactly.
        theta[:, axis, 2] = pixels.to(x.dtype) * (2.0 / size)
    return _warp(x, theta, mode="nearest")


def image_rotate(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Rotate each image about its centre by up to 15 degrees either way, bilinear, zero-filled."""
    n, _, height, width = x.shape
    angle = (torch.rand(n, generator=rng).to(device=x.device, dtype=x.dtype) * 2 - 1) * math.radians(_ROTATE_DEGREES)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    # A rotation in pixels, expressed in grid_sample's coordinates, which scale x by 2/width
    # and y by 2/height: without the aspect terms a non-square image would be sheared.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    return _warp(x, theta, mode="bilinear")


def tabular_noise(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise scaled to each feature's std within the batch (raw CSV columns differ in scale)."""
    return x + _NOISE * x.std(dim=0, keepdim=True, unbiased=False) * _randn(x.shape, rng, x)


AUGMENTATIONS: Mapping[str, Mapping[str, Augmentation]] = {
    "signal": {"noise": signal_noise, "scaling": signal_scaling, "shift": signal_shift},
    "image": {"shift": image_shift, "rotate": image_rotate},
    "tabular": {"noise": tabular_noise},
}
"""Built-in augmentation name -> function, per data kind (trial.plugins.load_augmentation looks names up here)."""

CUTMIX_KINDS = ("signal", "image")
"""Data kinds with a region to cut: a time segment or an image patch."""


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the batch with a shuffled copy of itself: lam ~ Beta(alpha, alpha), one lam per batch."""
    lam = _beta(alpha)
    perm = torch.randperm(len(x)).to(x.device)
    mixed = lam * x + (1.0 - lam) * x[perm]
    return mixed, _soft_targets(y, perm, num_classes, lam)


def cutmix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, data_kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a region of a shuffled copy into the batch: an image patch, or a time segment of every lead.

    The region covers about 1 - lam of the sample, lam ~ Beta(alpha, alpha); the targets
    are weighted by the area actually pasted (a patch is clipped at the border).
    """
    if data_kind not in CUTMIX_KINDS:
        raise ValueError(f"cutmix needs {' or '.join(CUTMIX_KINDS)} data, got {data_kind!r}")
    lam = _beta(alpha)
    perm = torch.randperm(len(x)).to(x.device)
    mixed = x.clone()
    if data_kind == "signal":
        length = x.shape[-1]
        cut = int(length * (1.0 - lam))
        start = int(torch.randint(0, length - cut + 1, ()))
        mixed[..., start : start + cut] = x[..., start : start + cut][perm]
        pasted = cut / length
    else:
        height, width = x.shape[-2:]
        side = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * side), int(width * side)
        cy, cx = int(torch.randint(0, height, ())), int(torch.randint(0, width, ()))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, width)
        mixed[..., y0:y1, x0:x1] = x[..., y0:y1, x0:x1][perm]
        pasted = (y1 - y0) * (x1 - x0) / (height * width)
    return mixed, _soft_targets(y, perm, num_classes, 1.0 - pasted)


def _beta(alpha: float) -> float:
    # Drawn on the CPU from torch's global generator, so it repeats under torch.manual_seed.
    concentration = torch.tensor(float(alpha))
    return float(torch.distributions.Beta(concentration, concentration).sample())


def _soft_targets(y: torch.Tensor, perm: torch.Tensor, num_classes: int, lam: float) -> torch.Tensor:
    one_hot = F.one_hot(y, num_classes).float()
    return lam * one_hot + (1.0 - lam) * one_hot[perm]


def _warp(x: torch.Tensor, theta: torch.Tensor, *, mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
