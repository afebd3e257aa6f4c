"""Write this example's data: the demo ECG recordings as one CSV per recording, in ./data.

A stand-in for a team's own files: a labels CSV whose `path` column names a CSV per
recording (a column per lead), which trial reads through records.py's `read_record`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from trial.datasets import materialize


def main(folder: Path, n_recordings: int) -> None:
    source = materialize("demo_ecg", folder / "source", params={"n_recordings": n_recordings, "length": 500})
    labels = pd.read_csv(source)
    records = folder / "records"
    records.mkdir(parents=True, exist_ok=True)
    for row in labels.itertuples():
        signal = np.load(source.parent / row.path)
        name = Path(row.path).with_suffix(".csv").name
        pd.DataFrame(signal.T, columns=[f"lead{i}" for i in range(len(signal))]).to_csv(records / name, index=False, float_format="%.5f")
    labels.assign(path=[f"records/{Path(p).with_suffix('.csv').name}" for p in labels["path"]]).to_csv(
        folder / "labels.csv", index=False
    )
    print(folder / "labels.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data"), int(sys.argv[2]) if len(sys.argv) > 2 else 600)
