"""The pre-flight check and debug mode's fitting, on real data files, before Ray starts.

Each case here used to fail every trial inside Ray (or pass --debug and fail the full
run); now it is one line on stderr, exit 2, before any MLflow run is opened.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from torch import nn

from trial import Solver, SolverParams
from tests.team_data import team_data
from trial import ray_backend
from trial.cli import main
from trial.config import load_config
from trial.data import prepare_data
from trial.loop import Trainer
from trial.preflight import fit_debug_batch_size, preflight, search_extremes
from trial.ray_backend import build_scheduler
from trial.sweep import sweep_job


def write_config(tmp_path: Path, labels: Path, *, solver: dict | None = None, space: dict | None = None, **extra) -> Path:
    config = {
        "name": "team",
        "data": {
            "labels": str(labels),
            "stratify": ["label", "hos"],
            "group": "patient_id",
            "balance": ["label", "age_group"],
        },
        "solver": solver or {"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": 64, "channels": 4}},
        "search": {
            "metric": "valid/auroc",
            "num_samples": 2,
            "space": space or {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
        },
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "storage": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the sweep gets as far as starting Ray."""

    def reached_ray(address=None, **_):
        raise AssertionError("the sweep reached Ray")

    monkeypatch.setattr(ray_backend, "connect_ray", reached_ray)


def run_cli(args: list[str], capsys) -> tuple[int, list[str]]:
    code = main(args)
    return code, capsys.readouterr().err.strip().splitlines()


def assert_no_runs(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


# -- search extremes ------------------------------------------------------------------


def test_extremes_are_the_base_then_every_corner_of_the_space():
    from trial.config import Distribution

    space = {
        "channels": Distribution(type="int", low=4, high=64),
        "augment": Distribution(type="choice", values=("noise", "shift", "noise,shift")),
    }
    variants = search_extremes(space)
    assert variants[0] == {}
    assert variants[1:] == [
        {"channels": 4, "augment": "noise"},
        {"channels": 4, "augment": "shift"},
        {"channels": 4, "augment": "noise,shift"},
        {"channels": 64, "augment": "noise"},
        {"channels": 64, "augment": "shift"},
        {"channels": 64, "augment": "noise,shift"},
    ]


# -- run-time misfits caught before Ray -----------------------------------------------


def test_a_batch_larger_than_the_split_per_worker_is_one_line(tmp_path, capsys, no_ray):
    labels = team_data(tmp_path / "data", rows=120)
    config = write_config(tmp_path, labels, solver={"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": 256}})
    code, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("trial: error: pre-flight: solver 'ecg_cnn1d' with its base params: ")
    assert "too few for one full batch of 256 on each of 1 worker(s)" in err[0]
    # The largest batch that fits is named; the balanced epoch is 2 keys-of-label x ... : check it works.
    fits = int(err[0].rsplit("<= ", 1)[1])
    ok = write_config(tmp_path, labels, solver={"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": fits}})
    prepared_config = load_config(ok)
    assert preflight(prepared_config, sweep_job(prepared_config, prepare_data(prepared_config))) >= 0
    too_big = write_config(tmp_path, labels, solver={"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": fits + 1}})
    assert run_cli(["run", "--config", str(too_big)], capsys)[0] == 2
    assert_no_runs(tmp_path)


def test_a_searched_batch_size_at_the_edge_is_named(tmp_path, capsys, no_ray):
    labels = team_data(tmp_path / "data", rows=120)
    space = {"batch_size": {"type": "int", "low": 16, "high": 1024}}
    config = write_config(tmp_path, labels, space=space)
    code, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("trial: error: pre-flight: solver 'ecg_cnn1d' with batch_size=1024: ")
    assert_no_runs(tmp_path)


def test_two_workers_halve_the_batch_that_fits(tmp_path):
    labels = team_data(tmp_path / "data", rows=120)
    fitted = []
    for workers in (1, 2):
        config = load_config(
            write_config(
                tmp_path, labels, debug=True, scaling={"num_workers": workers},
                solver={"name": "ecg_cnn1d", "params": {"batch_size": 4096}},
            )
        )
        with pytest.warns(UserWarning, match=f"on each of {workers} worker"):
            fitted.append(fit_debug_batch_size(config, sweep_job(config, prepare_data(config))).solver.params.batch_size)
    assert fitted[1] == fitted[0] // 2


def test_a_model_that_cannot_take_the_data_shape_is_one_line(tmp_path, capsys, no_ray):
    labels = team_data(tmp_path / "data", rows=120, shape=(1, 8))  # shorter than ecg_cnn1d's 4 poolings need
    config = write_config(tmp_path, labels, solver={"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": 16}})
    code, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("trial: error: pre-flight: solver 'ecg_cnn1d' with its base params: ")
    assert "[leads, length] with length >= 16, got [1, 8]" in err[0]
    assert_no_runs(tmp_path)


class _WidthParams(SolverParams):
    width: int = 8


class _WidthMismatch(Solver):
    """A user's model whose head expects `width` features: wrong for any width but 256."""

    Params = _WidthParams

    def build_model(self, input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(self.params.width, num_classes))


def test_a_searched_value_that_breaks_the_forward_pass_is_named(tmp_path, capsys, no_ray, monkeypatch):
    labels = team_data(tmp_path / "data", rows=120)
    config = write_config(
        tmp_path,
        labels,
        solver={"name": "tests.unit.test_preflight:_WidthMismatch", "params": {"epochs": 1, "batch_size": 16, "width": 256}},
        space={"width": {"type": "choice", "values": [256, 300]}},
    )
    code, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("trial: error: pre-flight: solver 'tests.unit.test_preflight:_WidthMismatch' with width=300 failed on the data: RuntimeError: ")
    assert "300" in err[0]
    assert_no_runs(tmp_path)


def test_shape_alike_variants_only_build_their_model(tmp_path, monkeypatch):
    """lr and weight_decay change no shape: one training step serves all five variants."""
    labels = team_data(tmp_path / "data", rows=120)
    space = {
        "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
        "weight_decay": {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-2},
    }
    config = load_config(write_config(tmp_path, labels, space=space))
    steps = []
    original = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, *a, **k: steps.append(self.solver.params) or original(self, *a, **k))
    preflight(config, sweep_job(config, prepare_data(config)))
    assert len(steps) == 1
    steps.clear()
    wide = load_config(write_config(tmp_path, labels, space={"channels": {"type": "int", "low": 2, "high": 6}}))
    preflight(wide, sweep_job(wide, prepare_data(wide)))
    assert sorted(params.channels for params in steps) == [2, 4, 6]  # base 4, then both extremes


# -- config combinations Ray or Optuna would refuse -------------------------------------


def test_asha_grace_period_longer_than_the_trials_is_lowered_with_a_warning(tmp_path):
    labels = team_data(tmp_path / "data", rows=60)
    path = write_config(tmp_path, labels, search={"metric": "valid/auroc", "scheduler": {"type": "asha", "grace_period": 2}, "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}})
    with pytest.warns(UserWarning, match=r"search.scheduler.grace_period=2 lowered to 1: .*solver.params.epochs"):
        config = load_config(path, ["solver.params.epochs=1"])
    assert config.search.scheduler.grace_period == 1
    build_scheduler(config, set())  # Ray asserts grace_period <= max_t here


def test_asha_max_t_follows_a_searched_epochs_range(tmp_path):
    labels = team_data(tmp_path / "data", rows=60)
    search = {
        "metric": "valid/auroc",
        "scheduler": {"type": "asha", "grace_period": 5},
        "space": {"epochs": {"type": "int", "low": 2, "high": 6}},
    }
    config = load_config(write_config(tmp_path, labels, search=search), ["solver.params.epochs=3"])
    assert config.search.scheduler.grace_period == 5  # trials may run 6 epochs: nothing to lower
    assert build_scheduler(config, set())._max_t == 6


def test_a_range_optuna_refuses_is_one_line(tmp_path, capsys):
    labels = team_data(tmp_path / "data", rows=60)
    space = {"lr": {"type": "uniform", "low": 1.0e-4, "high": 1.0e-1, "log": True, "step": 1.0e-2}}
    code, err = run_cli(["run", "--config", str(write_config(tmp_path, labels, space=space))], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("trial: error: search.space.lr: Optuna refuses this range: ")
    assert "step" in err[0]


# -- debug mode ---------------------------------------------------------------------------


def test_debug_lowers_the_batch_size_to_what_the_sample_holds(tmp_path, capsys, no_ray):
    labels = team_data(tmp_path / "data")
    path = write_config(tmp_path, labels, debug=True, space={"batch_size": {"type": "choice", "values": [32, 64, 128]}})
    config = load_config(path)
    assert config.name == "team-debug" and config.experiment_name == "team"
    job = sweep_job(config, prepare_data(config))
    with pytest.warns(UserWarning, match=r"debug: solver.params.batch_size lowered from 128 to \d+") as caught:
        fitted = fit_debug_batch_size(config, job)
    assert len(caught) == 1
    fits = fitted.solver.params.batch_size
    assert fits < 64
    assert fitted.search.space["batch_size"].values == ((32, fits) if fits > 32 else (fits,))
    preflight(fitted, sweep_job(fitted, prepare_data(fitted)))  # every variant now trains
    # The full run takes these batches as they are: it gets past every check to Ray.
    full = write_config(tmp_path, labels, space={"batch_size": {"type": "choice", "values": [32, 64, 128]}})
    with pytest.raises(AssertionError, match="reached Ray"):
        run_cli(["run", "--config", str(full)], capsys)


def test_debug_checks_every_row_but_trains_on_the_sample(tmp_path):
    labels = team_data(tmp_path / "data")
    config = load_config(write_config(tmp_path, labels, debug=True))
    prepared = prepare_data(config)
    assert 40 <= len(prepared.frame()) <= 60  # 5% of 400, at least 20 rows of each class
    # The full run's manifest was built (and cached) while checking every row.
    full = load_config(write_config(tmp_path, labels))
    assert prepare_data(full).manifest_csv.exists()
    manifests = {p.name for p in (tmp_path / "runs" / "cache").glob("manifest-*.csv")}
    assert prepare_data(full).manifest_csv.name in manifests and len(manifests) == 2


def test_debug_sweeps_have_their_own_name_and_storage(tmp_path):
    labels = team_data(tmp_path / "data", rows=60)
    path = write_config(tmp_path, labels, tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "ours"})
    real, debug = load_config(path), load_config(path, ["debug=true"])
    assert (real.name, debug.name) == ("team", "team-debug")
    assert real.experiment_name == debug.experiment_name == "ours"
    assert real.storage_path / real.name != debug.storage_path / debug.name
