"""A team's own file format: one CSV per recording, a column per lead, a row per sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_record(path: Path) -> np.ndarray:
    """The recording as float32 [leads, length]."""
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2).T
