"""The solver contract: the built-ins pass the very checks `trial check-solver` runs on a
team's solver; plug-in names load or fail with one line; params validate strictly."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import Field, ValidationError
from torch import nn

from trial import DataError, Solver, SolverParams, plugins
from trial.cli import main
from trial.errors import ConfigError
from trial.plugins import BUILTIN_SOLVERS, load_augmentation, load_reader, load_solver, shipped_modules
from trial.solver_checks import INPUT_SHAPES, check_solver, contract_cases, run_check

BUILTINS = sorted(BUILTIN_SOLVERS)
CASES = [(name, check, kind) for name in BUILTINS for check, kind in contract_cases(name)]


@pytest.mark.parametrize(("name", "check", "kind"), CASES, ids=[f"{n}-{c}-{k}" for n, c, k in CASES])
def test_builtin_solvers_keep_the_contract(name: str, check: str, kind: str | None) -> None:
    run_check(name, check, kind)


def test_every_builtin_claims_one_kind_and_is_checked_on_it() -> None:
    kinds = {name: load_solver(name).data_kinds for name in BUILTINS}
    assert kinds == {"ecg_cnn1d": ("signal",), "image_cnn": ("image",), "tabular_mlp": ("tabular",)}
    assert [kind for check, kind in contract_cases("image_cnn") if kind] == ["image"] * 4


# ---- a team's solver, broken in each way the checks look for ----------------------------


class _NoDefault(Solver):
    class Params(SolverParams):
        hidden: int

    def build_model(self, input_shape, num_classes):
        return nn.Linear(input_shape[-1], num_classes)


class _WrongWidth(Solver):
    data_kinds = ("tabular",)

    def build_model(self, input_shape, num_classes):
        return nn.Linear(input_shape[-1], num_classes + 1)


class _Unseeded(Solver):
    data_kinds = ("tabular",)

    def build_model(self, input_shape, num_classes):
        torch.manual_seed(torch.seed() % 1000)  # draws its own seed: runs never repeat
        return nn.Linear(input_shape[-1], num_classes)


class _Frozen(Solver):
    data_kinds = ("image",)

    def build_model(self, input_shape, num_classes):
        model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes))
        for parameter in model.parameters():
            parameter.requires_grad = False
        return model


class _Fine(Solver):
    data_kinds = ("tabular", "signal")

    class Params(SolverParams):
        hidden: int = Field(16, ge=1)

    def build_model(self, input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), self.params.hidden), nn.ReLU(),
                             nn.Linear(self.params.hidden, num_classes))


def _failures(cls: type[Solver]) -> dict[str, str]:
    return {name: failure for name, failure in check_solver(cls) if failure}


def test_a_well_made_team_solver_passes_on_each_kind_it_claims() -> None:
    results = check_solver(_Fine)
    assert [name for name, _ in results] == [
        "params", "data_kinds",
        "builds[tabular]", "trains[tabular]", "state_round_trip[tabular]", "same_seed[tabular]",
        "builds[signal]", "trains[signal]", "state_round_trip[signal]", "same_seed[signal]",
    ]
    assert all(failure is None for _, failure in results)


def test_check_solver_names_each_broken_part_in_one_line() -> None:
    assert _failures(_NoDefault)["params"] == "Params needs a default for hidden"
    assert _failures(_NoDefault)["builds[image]"] == "solver.params.hidden: required key is missing"
    assert _failures(_WrongWidth) == {"builds[tabular]": "a batch [8, 10] gave [8, 4], expected logits [8, 3]"}
    assert _failures(_Unseeded) == {"same_seed[tabular]": "the same seed gave different weights at weight, bias"}
    frozen = _failures(_Frozen)
    assert list(frozen) == ["trains[image]", "state_round_trip[image]", "same_seed[image]"]
    assert frozen["trains[image]"].startswith("RuntimeError: element 0 of tensors does not require grad")
    for failures in (_failures(_NoDefault), _failures(_WrongWidth), _failures(_Frozen)):
        assert all("\n" not in line for line in failures.values())


def test_the_check_solver_command_prints_a_line_per_check_and_fails_on_any(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "team_models.py").write_text(textwrap.dedent('''
        import torch
        from trial import Solver

        class Wide(Solver):
            data_kinds = ("tabular",)
            def build_model(self, input_shape, num_classes):
                return torch.nn.Linear(input_shape[0], num_classes + 2)
    '''))
    monkeypatch.chdir(tmp_path)
    assert main(["check-solver", "team_models:Wide"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "FAIL builds[tabular]: a batch [8, 10] gave [8, 5], expected logits [8, 3]"
    assert out[-1] == "team_models:Wide: 5 of 6 checks passed"
    assert main(["check-solver", "tabular_mlp"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "tabular_mlp: 6 of 6 checks passed"
    assert main(["check-solver", "team_models:Narrow"]) == 2
    assert capsys.readouterr().err.startswith("trial: error: solver.name: module 'team_models' ")


# ---- finding code by name --------------------------------------------------------------------


@pytest.fixture
def team_dir(tmp_path, monkeypatch) -> Path:
    """A team's folder outside the project, as the working directory, forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    names = set(__import__("sys").modules)
    yield tmp_path
    for name in set(__import__("sys").modules) - names:
        __import__("sys").modules.pop(name, None)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


_TINY = '''
    import torch
    from trial import Solver, SolverParams

    class Tiny(Solver):
        class Params(SolverParams):
            hidden: int = 16
        def build_model(self, input_shape, num_classes):
            return torch.nn.Linear(input_shape[-1], num_classes)
'''


def test_a_solver_loads_from_a_module_of_the_working_directory_and_from_a_file(team_dir) -> None:
    _write(team_dir, "models.py", _TINY)
    _write(team_dir, "more/nets.py", _TINY.replace("Tiny", "Other"))
    assert load_solver("models:Tiny").__name__ == "Tiny"
    assert load_solver("more/nets.py:Other").__module__ == "nets"
    assert load_solver(str(team_dir / "more" / "nets.py") + ":Other") is load_solver("more/nets.py:Other")
    assert load_solver("ecg_cnn1d").__name__ == "ECGCNN1d"


@pytest.mark.parametrize(
    ("ref", "files", "expected"),
    [
        ("nosuch:Net", {}, "solver.name: no module 'nosuch' (from 'nosuch:Net') in the working directory "),
        ("models:Nope", {"models.py": _TINY}, "solver.name: module 'models' (imported from "),
        ("models:helper", {"models.py": textwrap.dedent(_TINY) + "\ndef helper(): pass\n"}, "solver.name: 'models:helper' is the function 'helper', not a subclass of trial.Solver"),
        ("models:Tiny", {"models.py": "import torchvision_not_installed\n"}, "solver.name: importing 'models' (from 'models:Tiny') failed: ModuleNotFoundError: No module named 'torchvision_not_installed'"),
        ("models:Tiny", {"models.py": "def broken(:\n"}, "solver.name: importing 'models' (from 'models:Tiny') failed: SyntaxError: "),
        ("models:Tiny", {"models.py": "raise RuntimeError('no GPU here')\n"}, "solver.name: importing 'models' (from 'models:Tiny') failed: RuntimeError: no GPU here"),
        ("gone.py:Tiny", {}, "solver.name: file not found: "),
        ("models:Half", {"models.py": "from trial import Solver\nclass Half(Solver):\n    pass\n"}, "solver.name: 'models:Half' does not implement build_model"),
        ("models:Odd", {"models.py": "from trial import Solver\nclass Odd(Solver):\n    Params = dict\n    def build_model(self, s, n): pass\n"}, "solver.name: 'models:Odd'.Params must subclass trial.SolverParams"),
        ("resnet", {}, "solver.name: unknown solver 'resnet'; known: ecg_cnn1d, image_cnn, tabular_mlp; or name your own"),
        (":Tiny", {}, "solver.name: ':Tiny' is not 'module.path:Name' or 'path/file.py:Name'"),
    ],
)
def test_a_solver_that_cannot_load_is_one_line_naming_key_module_and_cause(team_dir, ref, files, expected) -> None:
    for name, text in files.items():
        _write(team_dir, name, text)
    with pytest.raises(ConfigError) as error:
        load_solver(ref)
    assert str(error.value).startswith(expected), str(error.value)
    assert "\n" not in str(error.value)


def test_a_file_named_like_a_loaded_module_is_refused(team_dir) -> None:
    _write(team_dir, "json.py", _TINY)
    with pytest.raises(ConfigError, match=r"^solver.name: json.py would be imported as module 'json', which is already imported from "):
        load_solver("json.py:Tiny")


def test_readers_and_augmentations_load_by_reference_or_builtin_name(team_dir) -> None:
    _write(team_dir, "io_team.py", '''
        import numpy as np
        def read_record(path):
            return np.load(path)["signal"]
        def two_args(path, scale):
            return None
        def grid_mask(x, rng):
            return x
    ''')
    assert load_reader("io_team:read_record").__name__ == "read_record"
    with pytest.raises(ConfigError, match=r"^data.reader: 'io_team:two_args' has the signature \(path, scale\); expected a function \(path\) -> array$"):
        load_reader("io_team:two_args")
    assert load_augmentation("io_team:grid_mask", "signal").__name__ == "grid_mask"
    assert load_augmentation("noise", "signal").__name__ == "signal_noise"
    assert load_augmentation("noise", "tabular").__name__ == "tabular_noise"
    with pytest.raises(ConfigError, match=r"^solver.params.augment: unknown augmentation 'rotate' for signal data; built-in for signal: noise, scaling, shift \('rotate' is for image data\)"):
        load_augmentation("rotate", "signal")
    with pytest.raises(ConfigError, match=r"^solver.params.augment: 'io_team:read_record' has the signature \(path\); expected a function \(x, rng\) -> x$"):
        load_augmentation("io_team:read_record", "signal")


def test_shipped_modules_are_the_teams_own_with_their_siblings_never_installed_ones(team_dir) -> None:
    _write(team_dir, "layers.py", "import torch\nWIDTH = 4\n")
    _write(team_dir, "models.py", "import layers\n" + textwrap.dedent(_TINY))
    _write(team_dir, "pkg/__init__.py", "")
    _write(team_dir, "pkg/nets.py", _TINY)
    _write(team_dir / "elsewhere", "aug.py", "def grid_mask(x, rng):\n    return x\n")
    load_solver("models:Tiny")
    load_solver("pkg.nets:Tiny")
    load_augmentation("elsewhere/aug.py:grid_mask", "signal")
    shipped = shipped_modules(["models:Tiny", "elsewhere/aug.py:grid_mask", "ecg_cnn1d", "noise"])
    assert shipped == sorted([str(team_dir / "layers.py"), str(team_dir / "models.py"), str(team_dir / "pkg"),
                              str(team_dir / "elsewhere" / "aug.py")])
    assert shipped_modules(["ecg_cnn1d", "numpy:ndarray"]) == []


# ---- params ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_params_defaults_names_and_frozen(name: str) -> None:
    cls = load_solver(name)
    params = cls.parse_params({})
    assert params == cls.Params() == cls.parse_params(None)
    assert (params.epochs, params.batch_size) == (8, 64)
    assert set(SolverParams.model_fields) <= set(cls.param_names()) and cls.param_names() == sorted(cls.param_names())
    with pytest.raises(ValidationError):
        params.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", BUILTINS)
def test_known_values_are_kept_and_numpy_scalars_are_their_numbers(name: str) -> None:
    params = load_solver(name).parse_params({"epochs": 3, "lr": 1, "batch_size": np.int64(16), "class_weights": np.bool_(True)})
    assert (params.epochs, params.batch_size, params.lr, params.class_weights) == (3, 16, 1.0, True)
    assert type(params.lr) is float and type(params.batch_size) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"learning_rate": 0.1}, "solver.params.learning_rate: unknown param for solver 'ecg_cnn1d'; known: augment, batch_size, "),
        ({"lrr": 0.1}, "solver.params.lrr: unknown param for solver 'ecg_cnn1d'; known: "),
        ({"lr": "1e-3"}, "solver.params.lr: expected a number, got the text '1e-3' (YAML reads 1e-3 as text: write 1.0e-3)"),
        ({"lr": True}, "solver.params.lr: must be a valid number, got True (bool)"),
        ({"lr": None}, "solver.params.lr: must be a valid number, got None (NoneType)"),
        ({"lr": float("nan")}, "solver.params.lr: must be a finite number, got nan (float)"),
        ({"epochs": 2.0}, "solver.params.epochs: must be a valid integer, got 2.0 (float)"),
        ({"epochs": "8"}, "solver.params.epochs: must be a valid integer, got '8' (str)"),
        ({"batch_size": False}, "solver.params.batch_size: must be a valid integer, got False (bool)"),
        ({"epochs": 0}, "solver.params.epochs: must be greater than or equal to 1, got 0 (int)"),
        ({"lr": 0.0}, "solver.params.lr: must be greater than 0, got 0.0 (float)"),
        ({"weight_decay": -0.1}, "solver.params.weight_decay: must be greater than or equal to 0, got -0.1 (float)"),
        ({"channels": 0}, "solver.params.channels: must be greater than or equal to 1, got 0 (int)"),
        ({"dropout": 1.0}, "solver.params.dropout: must be less than 1, got 1.0 (float)"),
        ({"optimizer": "rmsprop"}, "solver.params.optimizer: must be 'adam', 'adamw' or 'sgd', got 'rmsprop'"),
        ({"lr_scheduler": "plateau"}, "solver.params.lr_scheduler: must be 'cosine', 'none', 'onecycle' or 'step', got 'plateau'"),
        ({"augment": ["noise", "shift", "noise"]}, "solver.params.augment: 'noise' listed more than once"),
        ({"head": "replace"}, "solver.params.head: replace needs init_from (the weights whose head it replaces)"),
        ({"unfreeze_after": 2}, "solver.params.unfreeze_after: needs freeze (the parameter prefixes to unfreeze)"),
        ([("lr", 0.1)], "solver.params: expected a mapping of param names to values, got list"),
    ],
)
def test_a_bad_param_is_one_line_naming_the_key_the_value_and_what_is_allowed(raw, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_solver("ecg_cnn1d").parse_params(raw, name="ecg_cnn1d")
    assert str(error.value) == expected or (expected.endswith(" ") and str(error.value).startswith(expected)), str(error.value)


def test_a_solver_is_named_as_given_or_by_its_import_path() -> None:
    with pytest.raises(ConfigError, match=r"^solver.params.x: unknown param for solver 'solvers.tabular_mlp:TabularMLP'; "):
        load_solver("tabular_mlp").parse_params({"x": 1})


def test_names_accept_a_list_or_comma_separated_text() -> None:
    cls = load_solver("ecg_cnn1d")
    assert cls.parse_params({"augment": "noise, shift"}).augment == ("noise", "shift")
    assert cls.parse_params({"augment": ["noise", "team:grid_mask"]}).augment == ("noise", "team:grid_mask")
    assert cls.parse_params({"augment": ""}).augment == ()
    assert cls.parse_params({"freeze": "0., 1."}).freeze == ("0.", "1.")


def test_a_solver_takes_only_its_own_params_type() -> None:
    cls = load_solver("tabular_mlp")
    with pytest.raises(TypeError, match="parse_params"):
        cls({"lr": 0.1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parse_params"):
        cls(load_solver("image_cnn").parse_params({}))


@pytest.mark.parametrize("name", BUILTINS)
def test_a_sample_of_the_wrong_rank_is_a_data_error_naming_the_solver(name: str) -> None:
    cls = load_solver(name)
    with pytest.raises(DataError, match=name):
        cls(cls.parse_params({})).build_model((4, 4, 4, 4), 3)


def test_input_shapes_cover_every_data_kind() -> None:
    from trial.solver import DATA_KINDS

    assert set(INPUT_SHAPES) == set(DATA_KINDS)
    assert plugins.is_reference("a.b:C") and not plugins.is_reference("ecg_cnn1d")


def test_an_installed_package_offers_solvers_readers_and_augmentations_by_entry_point(team_dir, monkeypatch) -> None:
    # A real installed distribution, as pip leaves one: the package and its dist-info
    # (METADATA, entry_points.txt) in a folder on sys.path.
    site = team_dir / "site"
    _write(site, "teampkg/__init__.py", "")
    _write(site, "teampkg/nets.py", _TINY + '''
    import numpy as np

    def read_npz(path):
        return np.load(path)["x"]

    def flip(x, rng):
        return x.flip(-1)
    ''')
    _write(site, "teampkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: teampkg\nVersion: 1.0\n")
    _write(site, "teampkg-1.0.dist-info/entry_points.txt", '''
        [trial.solvers]
        team_tiny = teampkg.nets:Tiny

        [trial.readers]
        npz = teampkg.nets:read_npz

        [trial.augmentations]
        flip = teampkg.nets:flip
    ''')
    monkeypatch.syspath_prepend(str(site))
    assert load_solver("team_tiny").__name__ == "Tiny"
    assert "team_tiny" in plugins.solver_names() and plugins.solver_label(load_solver("team_tiny")) == "team_tiny"
    assert load_reader("npz").__name__ == "read_npz"
    assert load_augmentation("flip", "signal").__name__ == "flip"
    assert load_augmentation("noise", "signal").__name__ == "signal_noise"  # a built-in name still wins
    with pytest.raises(ConfigError, match=r"^data.reader: unknown reader 'csv'; known: npz; "):
        load_reader("csv")
    # Installed code is not shipped: the cluster's nodes have the package.
    assert shipped_modules(["team_tiny"]) == []


class _OwnHooks(Solver):
    """A solver with its own optimizer, loss and training step: the loop must use them."""

    data_kinds = ("tabular",)
    calls: list[str] = []

    def build_model(self, input_shape, num_classes):
        return nn.Linear(input_shape[0], num_classes)

    def configure_optimizer(self, model):
        self.calls.append("optimizer")
        return torch.optim.SGD(model.parameters(), lr=0.5)

    def loss(self, logits, targets, class_weights):
        self.calls.append("loss")
        return (logits - 1.0).pow(2).mean()  # pulls every logit to 1, whatever the labels

    def training_step(self, model, x, targets, class_weights):
        self.calls.append("step")
        return self.loss(model(x), targets, class_weights)


def test_a_solvers_own_hooks_replace_the_defaults_in_the_loop() -> None:
    from trial.loop import Trainer

    solver = _OwnHooks(_OwnHooks.parse_params({}))
    torch.manual_seed(0)
    model = solver.build_model((4,), 2)
    trainer = Trainer(solver, model, num_classes=2, data_kind="tabular", train_labels=np.array([0, 1]),
                      steps_per_epoch=1, device=torch.device("cpu"), seed=0)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    for _ in range(200):
        trainer.train_epoch(model, [(x, y)])
    assert _OwnHooks.calls[:3] == ["optimizer", "step", "loss"]
    with torch.no_grad():
        assert torch.allclose(model(x), torch.ones(64, 2), atol=1e-3)
