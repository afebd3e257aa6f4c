"""Built-in datasets, written to disk the way a team's own data folder looks.

`materialize("demo_ecg", root)` generates the data once into ``root/demo_ecg/`` (or
``root/demo_ecg-<hash>/`` for non-default params) and returns its labels.csv, so the
demos and tests run through exactly the code path a team's real CSV takes.

Folders appear atomically: everything is written into a hidden sibling folder that is
renamed into place only once complete, and the completion marker (dataset.json) is its
last file. A crash leaves at most a hidden ``.<name>.partial-*`` folder, never a
half-written dataset that a later run would reuse.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trial.errors import ConfigError, DataError

LABELS_FILE = "labels.csv"
MARKER_FILE = "dataset.json"
"""Written last into a dataset folder; a folder without it is never reused."""

# Bumped whenever a generator's output changes, and recorded in the marker so a
# folder can be traced back to the code that wrote it.
_GENERATOR_VERSION = 1


@dataclass(frozen=True)
class _Builtin:
    params: Mapping[str, tuple[int, int, int]]
    """Param name -> (default, minimum, maximum); every built-in param is an int."""
    generate: Callable[[Path, Mapping[str, int]], None]
    """Writes labels.csv (and any data files) into an existing empty folder."""
    defaults: Callable[[], dict[str, Any]]
    """See `dataset_defaults`."""
    kind: str
    """The solver data kind it fits: signal, image or tabular."""


def dataset_kind(name: str) -> str:
    """The solver data kind (`Solver.data_kind`) built-in dataset `name` fits."""
    return _builtin(name).kind


def builtin_datasets() -> list[str]:
    """Names `materialize` accepts, sorted."""
    return sorted(_BUILTINS)


def dataset_defaults(name: str) -> dict[str, Any]:
    """The data config that fits built-in dataset `name`, for config defaults and demos.

    Keys are `data.*` config keys: path_column (None for a tabular CSV), target,
    features (tabular columns, else None), stratify (columns the split keeps
    proportional), group (a column whose values never straddle splits, or None) and
    balance (columns the batch sampler balances, or None).
    """
    return _builtin(name).defaults()


def materialize(name: str, root: Path | str, *, params: Mapping[str, Any] | None = None) -> Path:
    """Generate built-in dataset `name` under `root` unless already there; return its labels.csv.

    `params` (config key `data.dataset_params`) override the generator's defaults; a
    dataset with non-default params gets its own folder, named by a hash of them. The
    same name and params always give the same bytes.
    """
    spec = _builtin(name)
    resolved = _resolve_params(name, spec, params)
    root = Path(root)
    folder = root / _folder_name(name, resolved, spec)
    if (folder / MARKER_FILE).is_file():
        return folder / LABELS_FILE
    if folder.exists():
        raise DataError(
            f"{folder}: exists but has no {MARKER_FILE}, so it is not a complete {name!r} dataset; move or delete it"
        )
    root.mkdir(parents=True, exist_ok=True)
    # A sibling of the final folder, so the rename stays on one filesystem and is atomic.
    partial = root / f".{folder.name}.partial-{uuid.uuid4().hex[:12]}"
    partial.mkdir()
    try:
        spec.generate(partial, resolved)
        marker = {"dataset": name, "params": dict(resolved), "generator_version": _GENERATOR_VERSION}
        (partial / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        try:
            os.rename(partial, folder)
        except OSError:
            # Another process (another trial, another worker) finished the same dataset
            # first; its copy has the same bytes, so keep it and drop ours.
            if not (folder / MARKER_FILE).is_file():
                raise
            shutil.rmtree(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder / LABELS_FILE


def _builtin(name: str) -> _Builtin:
    if not isinstance(name, str) or name not in _BUILTINS:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; built-in: {', '.join(builtin_datasets())}")
    return _BUILTINS[name]


def _resolve_params(name: str, spec: _Builtin, params: Mapping[str, Any] | None) -> dict[str, int]:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ConfigError(
            f"data.dataset_params: expected a mapping of param names to values, got {type(params).__name__}"
        )
    resolved = {key: default for key, (default, _, _) in spec.params.items()}
    for key in sorted(params, key=str):
        value = params[key]
        if key not in spec.params:
            known = ", ".join(sorted(spec.params)) or "none"
            raise ConfigError(f"data.dataset_params.{key}: unknown param for dataset {name!r}; known: {known}")
        _, low, high = spec.params[key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ConfigError(
                f"data.dataset_params.{key}: got {value!r} ({type(value).__name__}), expected an int in [{low}, {high}]"
            )
        if not low <= value <= high:
            raise ConfigError(f"data.dataset_params.{key}: got {value}, expected an int in [{low}, {high}]")
        resolved[key] = int(value)
    return resolved


def _folder_name(name: str, resolved: Mapping[str, int], spec: _Builtin) -> str:
    if all(resolved[key] == default for key, (default, _, _) in spec.params.items()):
        return name
    digest = hashlib.sha256(json.dumps(dict(resolved), sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def _age_groups(age: np.ndarray) -> np.ndarray:
    return np.select([age < 40, age < 60, age < 80], ["<40", "40-60", "60-80"], "80+")


# ---- demo_ecg ----------------------------------------------------------------------

ECG_FS = 250
"""demo_ecg sampling rate in Hz: the default 1,000 samples are 4 s, three to seven beats."""

# Hospitals differ in case mix, amplifier gain and recording quality, as real sites do:
# a model can partly tell the site from the noise, which is why the demo stratifies
# splits on `hos`. Columns: share of patients, positive rate, gain, white-noise sd (mV),
# baseline-wander amplitude (mV), 50 Hz mains amplitude (mV).
_HOSPITALS = {
    "northgate": (0.35, 0.10, 1.00, 0.030, 0.08, 0.00),
    "riverside": (0.30, 0.14, 0.80, 0.050, 0.15, 0.00),
    "st_elin": (0.20, 0.22, 1.25, 0.070, 0.25, 0.04),
    "westbrook": (0.15, 0.20, 1.10, 0.040, 0.10, 0.01),
}
_RECORDINGS_PER_PATIENT = 10 / 3  # about 600 patients for the default 2,000 recordings

# Waves of one beat, as Gaussians around the R peak (McSharry et al. 2003, ECGSYN):
# name -> (offset s, width s, amplitude mV). Offsets after the QRS stretch with
# sqrt(RR), as the QT interval does (Bazett). "st" is the ST-segment level, zero in a
# healthy beat; "q" is the small septal q wave every normal beat has.
_WAVES = {
    "p": (-0.17, 0.022, 0.12),
    "q": (-0.035, 0.010, -0.06),
    "r": (0.0, 0.011, 1.00),
    "s": (0.035, 0.011, -0.22),
    "st": (0.13, 0.045, 0.0),
    "t": (0.29, 0.050, 0.30),
}
_STRETCHED = ("st", "t")
# How strongly each wave shows in leads I, II and V2 (one row each).
_LEAD_GAINS = np.array(
    [
        [0.8, 0.8, 0.8, 0.5, 1.0, 0.8],
        [1.2, 1.0, 1.2, 0.6, 1.0, 1.0],
        [0.5, 0.3, 0.5, 2.5, 1.0, 1.4],
    ]
)
# Infarct territories and how their ST elevation and Q waves project onto I, II, V2;
# negative entries are reciprocal ST depression.
_TERRITORIES = np.array(
    [
        [0.6, -0.2, 1.0],  # anterior
        [-0.3, 1.0, -0.2],  # inferior
        [1.0, 0.3, 0.5],  # lateral
    ]
)
_MAX_HEART_RATE = 125
_CHUNK_ELEMENTS = 2**23  # recordings x beats x samples per vectorised chunk, to bound memory


def _generate_demo_ecg(folder: Path, params: Mapping[str, int]) -> None:
    """Synthetic ECG-like recordings: label 1 = myocardial infarction (MI), 0 = normal.

    MI shows as ST elevation and pathologic (deep, wide) Q waves in the leads facing
    the infarct, sometimes with T inversion. Its strength varies per patient and many
    cases are subtle, while some normals have benign ST elevation (early
    repolarisation) and deeper septal q waves, so the classes overlap.
    """
    rng = np.random.default_rng(params["seed"])
    n, leads, length = params["n_recordings"], params["leads"], params["length"]

    # 1. Patients: hospital, label (an exact positive quota per hospital), age, and
    #    the per-patient traits that all their recordings share.
    names = list(_HOSPITALS)
    table = np.array(list(_HOSPITALS.values()))
    n_patients = max(1, min(n, round(n / _RECORDINGS_PER_PATIENT)))
    hospital = rng.choice(len(names), size=n_patients, p=table[:, 0])
    label = np.zeros(n_patients, dtype=np.int64)
    for h in range(len(names)):
        members = np.flatnonzero(hospital == h)
        n_positive = round(table[h, 1] * len(members))
        label[rng.choice(members, size=n_positive, replace=False)] = 1
    age = np.where(label == 1, rng.normal(66, 11, n_patients), rng.normal(54, 15, n_patients))
    age = np.clip(np.round(age), 18, 95).astype(np.int64)

    # Every patient has at least one recording; the rest are spread unevenly.
    counts = 1 + rng.multinomial(n - n_patients, rng.dirichlet(np.full(n_patients, 2.0)))
    patient = rng.permutation(np.repeat(np.arange(n_patients), counts))

    # 2. Per-recording beat parameters: amplitudes [n, waves, base leads].
    amplitude = _beat_amplitudes(rng, label, n_patients)[patient]
    amplitude *= rng.lognormal(0.0, 0.08, (n, 1, 1))  # electrode placement differs per visit
    mixing = _lead_mixing(leads)
    heart_rate = np.clip(rng.normal(72, 11, n_patients)[patient] + rng.normal(0, 5, n), 48, _MAX_HEART_RATE)
    q_width = _q_widths(rng, label, n_patients)[patient]

    # 3. Waveforms with each hospital's gain and noise, written one chunk at a time
    #    (one .npy per recording, rows in random patient order like an export) so
    #    memory stays bounded whatever n_recordings is.
    site = hospital[patient]
    gain = table[site, 2] * rng.uniform(0.9, 1.1, n)
    t = np.arange(length, dtype=np.float64) / ECG_FS
    records = folder / "records"
    records.mkdir()
    paths = [f"records/{i:06d}.npy" for i in range(n)]
    chunk = max(1, _CHUNK_ELEMENTS // (length * _max_beats(t)))
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        shapes = _wave_shapes(rng, t, heart_rate[part], q_width[part])  # [n, waves, length]
        per_lead = np.einsum("lk,nwk->nlw", mixing, amplitude[part])
        # The amplifier gain scales everything it records, noise included.
        signal = gain[part, None, None] * (per_lead @ shapes + _noise(rng, t, leads, table[site[part]]))
        for path, recording in zip(paths[part], signal.astype(np.float32)):
            np.save(folder / path, recording)

    rec_age = age[patient]
    pd.DataFrame(
        {
            "path": paths,
            "label": label[patient],
            "hos": np.array(names)[site],
            "age": rec_age,
            "age_group": _age_groups(rec_age),
            "patient_id": [f"P{p:05d}" for p in patient],
        }
    ).to_csv(folder / LABELS_FILE, index=False)


def _beat_amplitudes(rng: np.random.Generator, label: np.ndarray, n_patients: int) -> np.ndarray:
    """Per-patient wave amplitudes [patients, waves, 3 base leads] in mV."""
    base = np.array([amp for _, _, amp in _WAVES.values()])
    waves = list(_WAVES)
    amp = np.broadcast_to(base[None, :, None] * _LEAD_GAINS.T[None], (n_patients, len(waves), 3)).copy()
    amp *= rng.lognormal(0.0, 0.18, (n_patients, len(waves), 1))  # body habitus, axis
    q, st, tw = waves.index("q"), waves.index("st"), waves.index("t")

    # Healthy variation that resembles MI: deeper septal q waves, and benign early
    # repolarisation (diffuse ST elevation) in about one normal in five.
    amp[:, q] *= rng.uniform(0.7, 2.5, (n_patients, 1))
    early_repol = rng.random(n_patients) < 0.2
    amp[:, st] += (early_repol * rng.uniform(0.03, 0.13, n_patients))[:, None]

    # MI: severity from Beta(1.1, 2.2) puts many cases near the subtle end.
    severity = np.where(label == 1, 0.08 + 0.92 * rng.beta(1.1, 2.2, n_patients), 0.0)
    territory = _TERRITORIES[rng.integers(0, len(_TERRITORIES), n_patients)]
    amp[:, st] += severity[:, None] * 0.30 * territory
    amp[:, q] -= severity[:, None] * 0.35 * np.clip(territory, 0, None)
    # About half the infarcts also invert T in the facing leads.
    inverts = (label == 1) & (rng.random(n_patients) < 0.5)
    amp[:, tw] *= 1 - (inverts * severity)[:, None] * 1.6 * np.clip(territory, 0, None)
    return amp


def _q_widths(rng: np.random.Generator, label: np.ndarray, n_patients: int) -> np.ndarray:
    """Q-wave Gaussian width in s per patient; MI widens it up to twofold, as a pathologic Q is."""
    width = _WAVES["q"][1] * rng.uniform(0.8, 1.3, n_patients)
    return np.where(label == 1, width * rng.uniform(1.0, 2.0, n_patients), width)


def _lead_mixing(leads: int) -> np.ndarray:
    """[leads, 3]: output leads as combinations of the base leads I, II, V2."""
    if leads <= 3:
        return np.eye(3)[:leads]
    # Extra leads are fixed random projections, the same for every seed.
    extra = np.random.default_rng(12345).normal(0, 0.6, (leads - 3, 3))
    return np.vstack([np.eye(3), extra])


def _wave_shapes(rng: np.random.Generator, t: np.ndarray, heart_rate: np.ndarray, q_width: np.ndarray) -> np.ndarray:
    """Unit-amplitude wave trains [n, waves, length]: every beat's Gaussian for each wave."""
    n = len(heart_rate)
    rr = 60.0 / heart_rate
    # Beat-to-beat RR variability; the first beat falls up to one RR before the window.
    intervals = rr[:, None] * rng.normal(1.0, 0.04, (n, _max_beats(t))).clip(0.85, 1.15)
    beats = np.cumsum(intervals, axis=1) - rng.uniform(1.0, 2.0, n)[:, None] * rr[:, None]
    rel = (t[None, None, :] - beats[:, :, None]).astype(np.float32)  # [n, beats, length]
    stretch = np.sqrt(rr)[:, None, None].astype(np.float32)
    shapes = np.empty((n, len(_WAVES), len(t)), dtype=np.float32)
    for w, (name, (offset, width, _)) in enumerate(_WAVES.items()):
        if name in _STRETCHED:
            offset, width = offset * stretch, width * stretch
        if name == "q":
            width = q_width[:, None, None].astype(np.float32)
        z = (rel - offset) / width
        shapes[:, w] = np.exp(-0.5 * z * z).sum(axis=1)
    return shapes


def _max_beats(t: np.ndarray) -> int:
    """Enough beats to cover the window at the fastest heart rate and shortest RR, with margin."""
    return int(np.ceil(t[-1] / (0.85 * 60.0 / _MAX_HEART_RATE))) + 3


def _noise(rng: np.random.Generator, t: np.ndarray, leads: int, site: np.ndarray) -> np.ndarray:
    """Baseline wander, mains hum and white noise [n, leads, length] from hospital rows `site`."""
    n = len(site)
    white, wander, mains = site[:, 3], site[:, 4], site[:, 5]
    freq = rng.uniform(0.1, 0.5, (n, leads, 2))  # breathing and movement
    phase = rng.uniform(0, 2 * np.pi, (n, leads, 2))
    baseline = np.sin(2 * np.pi * freq[..., None] * t + phase[..., None]).sum(axis=2) / 2
    hum = np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi, (n, 1, 1)))
    return (
        wander[:, None, None] * baseline
        + mains[:, None, None] * hum
        + white[:, None, None] * rng.standard_normal((n, leads, len(t)))
    )


# ---- scikit-learn's bundled datasets ------------------------------------------------


def _generate_digits(folder: Path, params: Mapping[str, int]) -> None:
    """scikit-learn's 8x8 digits: one [1, 8, 8] float32 .npy per image, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    (folder / "images").mkdir()
    paths = [f"images/{i:04d}.npy" for i in range(len(images))]
    for path, image in zip(paths, images):
        np.save(folder / path, image)
    pd.DataFrame({"path": paths, "label": digits.target}).to_csv(folder / LABELS_FILE, index=False)


def _breast_cancer_features() -> list[str]:
    from sklearn.datasets import load_breast_cancer

    return [_snake_case(name) for name in load_breast_cancer().feature_names]


def _generate_breast_cancer(folder: Path, params: Mapping[str, int]) -> None:
    """Wisconsin breast cancer as one CSV: 30 feature columns and label (1 = malignant)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    table = pd.DataFrame(data.data, columns=_breast_cancer_features())
    # scikit-learn codes benign as 1; the finding of interest is the positive class here.
    table["label"] = 1 - data.target
    table.to_csv(folder / LABELS_FILE, index=False)


def _snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


_BUILTINS: dict[str, _Builtin] = {
    "demo_ecg": _Builtin(
        kind="signal",
        params={
            "n_recordings": (2000, 1, 100_000),
            "leads": (3, 1, 12),
            "length": (1000, ECG_FS, 60 * ECG_FS),
            "seed": (0, 0, 2**32 - 1),
        },
        generate=_generate_demo_ecg,
        defaults=lambda: {
            "path_column": "path",
            "target": "label",
            "features": None,
            "stratify": ["label", "hos"],
            "group": "patient_id",
            "balance": ["label", "age_group"],
        },
    ),
    "digits": _Builtin(
        kind="image",
        params={},
        generate=_generate_digits,
        defaults=lambda: {
            "path_column": "path",
            "target": "label",
            "features": None,
            "stratify": ["label"],
            "group": None,
            "balance": None,
        },
    ),
    "breast_cancer": _Builtin(
        kind="tabular",
        params={},
        generate=_generate_breast_cancer,
        defaults=lambda: {
            "path_column": None,
            "target": "label",
            "features": _breast_cancer_features(),
            "stratify": ["label"],
            "group": None,
            "balance": None,
        },
    ),
}
