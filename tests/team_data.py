"""A team's own data as it arrives on day one: a labels CSV and one .npy file per row."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd


def first_day_columns(index: int) -> dict[str, Any]:
    """2 classes, 2 hospitals, an age group, one patient per row."""
    return {
        "label": int(index % 3 == 0),
        "hos": f"h{index % 2}",
        "age_group": "old" if index % 5 == 0 else "young",
        "patient_id": index,
    }


def team_data(
    folder: Path,
    *,
    rows: int = 400,
    shape: tuple[int, ...] = (1, 256),
    columns: Callable[[int], dict[str, Any]] = first_day_columns,
) -> Path:
    """Write `rows` random float32 arrays of `shape` as records/NNNN.npy under `folder`, and
    labels.csv: `path` and the `columns(index)` of each row. Returns the CSV's path."""
    (folder / "records").mkdir(parents=True)
    rng = np.random.default_rng(0)
    table = []
    for index in range(rows):
        path = f"records/{index:04d}.npy"
        np.save(folder / path, rng.normal(size=shape).astype(np.float32))
        table.append({"path": path, **columns(index)})
    pd.DataFrame(table).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"
