"""A team's own data as it arrives on day one: a labels CSV and one .npy file per row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def team_data(folder: Path, *, rows: int = 400, shape: tuple[int, ...] = (1, 256)) -> Path:
    """A team's first dataset: 2 classes, 2 hospitals, an age group, one .npy per row."""
    (folder / "records").mkdir(parents=True)
    rng = np.random.default_rng(0)
    table = []
    for index in range(rows):
        path = f"records/{index:04d}.npy"
        np.save(folder / path, rng.normal(size=shape).astype(np.float32))
        table.append(
            {
                "path": path,
                "label": int(index % 3 == 0),
                "hos": f"h{index % 2}",
                "age_group": "old" if index % 5 == 0 else "young",
                "patient_id": index,
            }
        )
    pd.DataFrame(table).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"
