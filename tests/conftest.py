"""Shared fixtures: one Ray instance for all integration tests, a temp MLflow store per test."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray (2 CPUs, 127.0.0.1) shared by every integration test."""
    import ray

    from trial.ray_backend import connect_ray

    if not ray.is_initialized():
        connect_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_config_data(tmp_path: Path) -> dict:
    """A small demo_ecg sweep: 2 trials x 2 epochs on 240 recordings, stores in tmp_path."""
    return {
        "name": "tiny",
        "seed": 42,
        "data": {
            "dataset": "demo_ecg",
            "dataset_params": {"n_recordings": 240},
            "root": str(tmp_path / "data"),
        },
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": 32, "channels": 8}},
        "search": {
            "metric": "valid/auroc",
            "mode": "max",
            "num_samples": 2,
            "max_concurrent": 2,
            "scheduler": {"type": "none"},
            "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
        },
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "tiny"},
    }


@pytest.fixture
def global_tracking_uri():
    """`mlflow.set_tracking_uri` for one test: MLflow also exports the URI as
    MLFLOW_TRACKING_URI, which every later test's default store would otherwise read."""
    import os

    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield mlflow.set_tracking_uri
    mlflow.set_tracking_uri(saved)  # None unsets it again
