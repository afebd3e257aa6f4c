"""Finding the code a config names: solvers, data readers and augmentations.

A config names each one in one of three forms, as Hydra's `_target_` and entry points do:

- a built-in name (`BUILTIN_SOLVERS`; augmentations: trial/augment.py), or a name an
  installed package offers through an entry-point group (`trial.solvers`,
  `trial.readers`, `trial.augmentations`);
- `module.path:Name`, imported from the working directory or PYTHONPATH;
- `path/to/file.py:Name`, a file imported as the module named by its stem.

Every failure is one `ConfigError` line naming the config key, the reference and the
cause. `shipped_modules` lists the user's modules that Ray must carry to workers that
do not have them (trial/ray_backend.py passes them as the runtime_env's py_modules).
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from trial.errors import ConfigError, first_line
from trial.solver import Solver, SolverParams

SOLVER_GROUP = "trial.solvers"
READER_GROUP = "trial.readers"
AUGMENTATION_GROUP = "trial.augmentations"

_KIND_WORDS = {SOLVER_GROUP: "solver", READER_GROUP: "reader", AUGMENTATION_GROUP: "augmentation"}

BUILTIN_SOLVERS = {
    "ecg_cnn1d": "solvers.ecg_cnn1d:ECGCNN1d",
    "image_cnn": "solvers.image_cnn:ImageCNN",
    "tabular_mlp": "solvers.tabular_mlp:TabularMLP",
}
"""The built-in solvers' names and where they live. A plain table, not install metadata:
the names work from a checkout and on a worker that only has the project on PYTHONPATH."""

# Packages the platform itself ships to workers (ray_backend puts the project on PYTHONPATH).
_PLATFORM_PACKAGES = frozenset({"trial", "solvers"})


def is_reference(text: str) -> bool:
    """True for `module:Name` and `file.py:Name`; False for a plain (built-in or entry-point) name."""
    return ":" in text


def load_reference(ref: str, *, key: str, group: str) -> Any:
    """The object `ref` names (see the module docstring); ConfigError naming `key` otherwise."""
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"{key}: expected a name or 'module:Name', got {ref!r}")
    if group == SOLVER_GROUP and ref in BUILTIN_SOLVERS:
        ref = BUILTIN_SOLVERS[ref]
    elif not is_reference(ref):
        return _entry_point(ref, key=key, group=group)
    module_part, _, attribute = ref.rpartition(":")
    if not module_part or not attribute:
        raise ConfigError(f"{key}: {ref!r} is not 'module.path:Name' or 'path/file.py:Name'")
    module = _import_file(module_part, key=key, ref=ref) if module_part.endswith(".py") else _import_module(module_part, key=key, ref=ref)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            defined = sorted(name for name in vars(module) if not name.startswith("_"))
            raise ConfigError(
                f"{key}: module {module.__name__!r} ({_where(module)}) has no {attribute!r}; "
                f"it defines: {', '.join(defined) or 'nothing public'}"
            )
        target = getattr(target, part)
    return target


def available(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The names installed packages offer in an entry-point group."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def solver_names() -> list[str]:
    """Every solver name a config can give without a module path: built-in and installed."""
    return sorted({*BUILTIN_SOLVERS, *available(SOLVER_GROUP)})


def load_solver(ref: str, *, key: str = "solver.name") -> type[Solver]:
    """The `trial.Solver` subclass `ref` names, checked to be usable as one."""
    cls = load_reference(ref, key=key, group=SOLVER_GROUP)
    if not (inspect.isclass(cls) and issubclass(cls, Solver)):
        raise ConfigError(f"{key}: {ref!r} is {_kind_of(cls)}, not a subclass of trial.Solver")
    if inspect.isabstract(cls):
        raise ConfigError(f"{key}: {ref!r} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    if not (inspect.isclass(cls.Params) and issubclass(cls.Params, SolverParams)):
        raise ConfigError(f"{key}: {ref!r}.Params must subclass trial.SolverParams, got {_kind_of(cls.Params)}")
    return cls


def solver_label(cls: type[Solver]) -> str:
    """How messages name a solver: its entry-point name where it has one, else module:Class."""
    reference = f"{cls.__module__}:{cls.__qualname__}"
    offered = {**{name: entry.value for name, entry in available(SOLVER_GROUP).items()}, **BUILTIN_SOLVERS}
    return next((name for name, value in offered.items() if value == reference), reference)


def load_reader(ref: str, *, key: str = "data.reader") -> Callable[[Path], Any]:
    """A function from one data file's path to its array."""
    reader = load_reference(ref, key=key, group=READER_GROUP)
    _check_callable(reader, ref, key=key, arguments=1, takes="(path) -> array")
    return reader


def load_augmentation(name: str, data_kind: str | None, *, key: str = "solver.params.augment") -> Callable:
    """A batch augmentation `fn(x, rng) -> x`: a built-in name of `data_kind`, or a reference."""
    from trial.augment import AUGMENTATIONS

    if is_reference(name):
        function = load_reference(name, key=key, group=AUGMENTATION_GROUP)
        _check_callable(function, name, key=key, arguments=2, takes="(x, rng) -> x")
        return function
    builtin = AUGMENTATIONS.get(data_kind or "", {})
    if name in builtin:
        return builtin[name]
    installed = available(AUGMENTATION_GROUP)
    if name in installed:
        return load_reference(name, key=key, group=AUGMENTATION_GROUP)
    if data_kind is None:
        raise ConfigError(
            f"{key}: unknown augmentation {name!r}: built-in augmentations need signal, image or tabular "
            "samples (1 to 3 dimensions); name your own as 'module:function'"
        )
    elsewhere = [kind for kind, table in AUGMENTATIONS.items() if name in table]
    raise ConfigError(
        f"{key}: unknown augmentation {name!r} for {data_kind} data; built-in for {data_kind}: "
        f"{', '.join(sorted(builtin)) or 'none'}"
        + (f" ({name!r} is for {' and '.join(elsewhere)} data)" if elsewhere else "")
        + "; or name your own as 'module:function'"
    )


def shipped_modules(refs: Iterable[str]) -> list[str]:
    """Paths of the user's top-level modules that workers need: those the referenced code
    was imported from, and any module imported from the same folders (its siblings)."""
    roots: set[Path] = set()
    for ref in refs:
        if not is_reference(ref):
            continue
        module_part = ref.rpartition(":")[0]
        name = _file_module_name(module_part) if module_part.endswith(".py") else module_part.partition(".")[0]
        module = sys.modules.get(name)
        if module is not None and _is_user_module(name, module):
            roots.add(_module_root(module))
    shipped: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if "." in name or not _is_user_module(name, module):
            continue
        if _module_root(module) in roots:
            shipped[name] = _module_path(module)
    return sorted(shipped.values())


# -- internals -------------------------------------------------------------------------------


def _entry_point(name: str, *, key: str, group: str) -> Any:
    entries = available(group)
    if name not in entries:
        known = solver_names() if group == SOLVER_GROUP else sorted(entries)
        raise ConfigError(
            f"{key}: unknown {_KIND_WORDS[group]} {name!r}; known: {', '.join(known) or 'none'}; "
            "or name your own as 'module.path:Name' or 'path/to/file.py:Name'"
        )
    try:
        return entries[name].load()
    except Exception as error:  # an installed plug-in that fails to import
        raise ConfigError(f"{key}: {name!r} ({entries[name].value}) failed to load: {type(error).__name__}: {first_line(error)}") from None


def _import_module(module_name: str, *, key: str, ref: str) -> ModuleType:
    # Like `python -m`, a config names modules relative to the working directory; the
    # console script's own sys.path does not hold it.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ConfigError(
                f"{key}: no module {module_name!r} (from {ref!r}) in the working directory {cwd} or on PYTHONPATH"
            ) from None
        raise ConfigError(f"{key}: importing {module_name!r} (from {ref!r}) failed: {_cause(error)}") from None
    except Exception as error:
        raise ConfigError(f"{key}: importing {module_name!r} (from {ref!r}) failed: {_cause(error)}") from None


def _file_module_name(path_text: str) -> str:
    return Path(path_text).stem


def _import_file(path_text: str, *, key: str, ref: str) -> ModuleType:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{key}: file not found: {path} (from {ref!r})")
    name = _file_module_name(path_text)
    existing = sys.modules.get(name)
    if existing is not None:
        if getattr(existing, "__file__", None) and Path(existing.__file__).resolve() == path:
            return existing
        raise ConfigError(
            f"{key}: {path.name} would be imported as module {name!r}, which is already {_where(existing)}; rename the file"
        )
    # Its folder goes on sys.path so that its own imports of sibling modules work, as
    # they do when Python runs the file; workers get the same modules (shipped_modules).
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ConfigError(f"{key}: importing {path} (from {ref!r}) failed: {_cause(error)}") from None
    return module


def _cause(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    return f"{type(error).__name__}: {first_line(error)}"


def _check_callable(obj: Any, ref: str, *, key: str, arguments: int, takes: str) -> None:
    if not callable(obj) or inspect.isclass(obj):
        raise ConfigError(f"{key}: {ref!r} is {_kind_of(obj)}, not a function {takes}")
    try:
        inspect.signature(obj).bind(*([None] * arguments))
    except TypeError:
        raise ConfigError(f"{key}: {ref!r} has the signature {inspect.signature(obj)}; expected a function {takes}") from None
    except ValueError:  # a builtin without a signature: trust it
        pass


def _kind_of(obj: Any) -> str:
    if inspect.isclass(obj):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    if callable(obj):
        return f"the function {getattr(obj, '__qualname__', obj)!r}"
    return f"a {type(obj).__name__} value"


def _where(module: ModuleType) -> str:
    file = getattr(module, "__file__", None)
    return f"imported from {file}" if file else "a built-in module"


def _module_path(module: ModuleType) -> str:
    """A package's folder, or a single-file module's .py file: what Ray's py_modules takes."""
    paths = getattr(module, "__path__", None)
    return str(list(paths)[0]) if paths else str(module.__file__)


def _module_root(module: ModuleType) -> Path:
    """The folder on sys.path the top-level module was found in."""
    return Path(_module_path(module)).resolve().parent


def _is_user_module(name: str, module: ModuleType) -> bool:
    """A module of the user's own code: from a file, not the platform, not installed, not stdlib."""
    if name in _PLATFORM_PACKAGES or name == "__main__":
        return False
    file = getattr(module, "__file__", None)
    paths = getattr(module, "__path__", None)
    if not file or (paths is not None and len(list(paths)) != 1):
        return False
    resolved = str(Path(file).resolve())
    return not resolved.startswith(_installed_roots())


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    """The folders of the standard library and of installed packages, each ending in a separator."""
    paths = sysconfig.get_paths()
    return tuple({str(Path(paths[key]).resolve()) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")})
