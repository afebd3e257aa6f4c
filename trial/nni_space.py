"""NNI's search space entries (`{_type, _value}`) as trial distributions.

`nni_distribution` maps one entry onto a trial distribution, for NNI-style entries in a
sweep config (trial/config.py) and for NNI's own files (trial/nni.py). The bounded types
keep exactly the values NNI draws: `quniform` and `qloguniform` draw
`clip(round(x / q) * q, low, high)`, the multiples of q in the range plus low and high
themselves where those are off q's grid (a choice then, a stepped range otherwise); a
range that NNI collapses to one value is imported as that fixed value, with a warning.
Exact counterparts map silently; the unbounded normal and qnormal, and the log weighting
of a stepped log range, become the closest Optuna has, with a warning that says so.
"""
from __future__ import annotations

import json
import math
import warnings
from decimal import Decimal
from typing import Any, Mapping, Sequence

from trial.errors import ConfigError

# normal(mu, sigma) has no bounds; Optuna's distributions need them. mu +- 3 sigma holds
# 99.7% of NNI's draws.
NORMAL_SIGMAS = 3.0
EXACT_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform")
APPROXIMATED_TYPES = ("normal", "qnormal")
# A q-range whose ends NNI clips off q's grid is held exactly only by a choice; past this
# many values that choice is no longer a search space anyone meant.
MAX_CHOICE_VALUES = 1000
_HALF = Decimal("0.5")


def nni_distribution(where: str, spec: Any) -> dict[str, Any]:
    """One NNI entry as a trial distribution dict; `where` names it in errors and warnings."""
    if not isinstance(spec, Mapping):
        # NNI passes any format through to a custom tuner; only _type/_value entries have a meaning here.
        raise ConfigError(
            f"{where}: expected an NNI {{_type, _value}} entry, got {shown(spec)} "
            "(a custom tuner's own format has no counterpart)"
        )
    extra = sorted(set(spec) - {"_type", "_value"}, key=str)
    if extra:
        raise ConfigError(f"{where}.{extra[0]}: unknown key in an NNI-style entry; allowed: _type, _value")
    missing = [key for key in ("_type", "_value") if key not in spec]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required in an NNI-style entry")
    nni_type, value = spec["_type"], spec["_value"]
    if nni_type not in EXACT_TYPES + APPROXIMATED_TYPES:
        allowed = ", ".join(EXACT_TYPES + APPROXIMATED_TYPES)
        raise ConfigError(f"{where}._type: {nni_type!r} has no Optuna counterpart; supported: {allowed}")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}._value: expected a non-empty list, got {value!r}")
    if nni_type == "choice":
        if any(isinstance(option, Mapping) and "_name" in option for option in value):
            raise ConfigError(
                f"{where}: NNI's nested choice (entries with _name) has no counterpart here; "
                "search each branch's params as keys of their own"
            )
        return {"type": "choice", "values": value}
    arity = 3 if nni_type.startswith("q") else 2
    if len(value) != arity or not all(is_number(v) for v in value):
        raise ConfigError(f"{where}._value: {nni_type} expects {arity} numbers, got {value!r}")
    if arity == 3 and value[2] <= 0:
        raise ConfigError(f"{where}._value: {nni_type} needs q > 0, got {value!r}")
    if nni_type in APPROXIMATED_TYPES:
        return _normal(where, nni_type, value)
    low, high = value[0], value[1]
    if nni_type == "randint":
        return _randint(where, low, high)
    if low > high:
        raise ConfigError(f"{where}._value: {nni_type} expects low <= high, got {value!r}")
    if "log" in nni_type and low <= 0:
        raise ConfigError(f"{where}._value: {nni_type} needs low > 0, got {value!r}")
    if low == high:
        return _fixed(where, nni_type, value, low)
    if nni_type == "uniform":
        return {"type": "uniform", "low": low, "high": high}
    if nni_type == "loguniform":
        return {"type": "loguniform", "low": low, "high": high}
    spec_out = _quantized(where, nni_type, value, low, high, value[2], clipped=True, log=nni_type == "qloguniform")
    if nni_type == "qloguniform" and not spec_out.get("log") and not _is_fixed(spec_out):
        warnings.warn(
            f"{where}: qloguniform {_listed(value)} became {_describe(spec_out)}: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
            stacklevel=2,
        )
    return spec_out


def _randint(where: str, low: float, high: float) -> dict[str, Any]:
    """NNI's randint draws low <= x < high."""
    if not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}._value: randint expects whole numbers, got {_listed([low, high])}")
    low, high = int(low), int(high)
    if high - low < 1:
        raise ConfigError(f"{where}._value: randint {_listed([low, high])} is empty: NNI draws low <= x < high")
    if high - low == 1:
        return _fixed(where, "randint", [low, high], low)
    return {"type": "int", "low": low, "high": high - 1}


def _normal(where: str, nni_type: str, value: list[float]) -> dict[str, Any]:
    """normal and qnormal over mu +- 3 sigma, with a warning."""
    mu, sigma = value[0], value[1]
    if sigma <= 0:
        raise ConfigError(f"{where}._value: {nni_type} needs sigma > 0, got {value!r}")
    low, high = mu - NORMAL_SIGMAS * sigma, mu + NORMAL_SIGMAS * sigma
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{where}._value: {nni_type} {_listed(value)} spans beyond what a float holds")
    if nni_type == "qnormal":  # NNI's round(normal / q) * q: multiples of q, unclipped
        spec_out = _quantized(where, nni_type, value, low, high, value[2], clipped=False, log=False)
        if _is_fixed(spec_out):
            return spec_out
    else:
        spec_out = {"type": "uniform", "low": low, "high": high}
    warnings.warn(
        f"{where}: {nni_type}({', '.join(str(v) for v in value)}) became {_describe(spec_out)} "
        f"(mu +- {NORMAL_SIGMAS:g} sigma); Optuna has no normal distribution",
        stacklevel=2,
    )
    return spec_out


def _quantized(
    where: str, nni_type: str, value: list[float], low: float, high: float, q: float, *, clipped: bool, log: bool
) -> dict[str, Any]:
    """The values of NNI's `round(x / q) * q` for x over [low, high], then (`clipped`, the
    q(log)uniform types) `clip(..., low, high)`. Decimal arithmetic keeps 0.1 * 3 at 0.3."""
    step, first_x, last_x = _decimal(q), _decimal(low), _decimal(high)
    # The multiples k of q that some x in (low, high) rounds to.
    k_first = math.floor(first_x / step + _HALF)
    k_last = math.ceil(last_x / step - _HALF)
    first, last = k_first * step, k_last * step
    count = k_last - k_first + 1
    if clipped and (first < first_x or last > last_x):
        # The clip puts low and high themselves among the values, off q's grid: only a choice holds that.
        if count > MAX_CHOICE_VALUES:
            raise ConfigError(
                f"{where}._value: {nni_type} {_listed(value)} gives {count} values with low or high off q's grid, "
                f"too many for a choice (at most {MAX_CHOICE_VALUES}); make low and high multiples of q"
            )
        values = sorted({min(max(k * step, first_x), last_x) for k in range(k_first, k_last + 1)})
        if len(values) == 1:
            return _fixed(where, nni_type, value, _number(values[0]))
        whole = all(v == v.to_integral_value() for v in values)
        return {"type": "choice", "values": [int(v) if whole else float(v) for v in values]}
    if count == 1:
        return _fixed(where, nni_type, value, _number(first))
    whole = step == step.to_integral_value() and first == first.to_integral_value()
    spec_out: dict[str, Any] = {"type": "int" if whole else "uniform", "low": _number(first), "high": _number(last)}
    if not whole or step != 1:
        spec_out["step"] = _number(step)
    elif log and first > 0:
        spec_out["log"] = True  # Optuna's one stepped log range: ints, step 1
    return spec_out


def _fixed(where: str, nni_type: str, value: list[float], fixed: float) -> dict[str, Any]:
    warnings.warn(
        f"{where}: {nni_type} {_listed(value)} only ever draws {fixed!r}; "
        "imported as that fixed value (a one-value choice)",
        stacklevel=2,
    )
    return {"type": "choice", "values": [fixed]}


def _is_fixed(spec: Mapping[str, Any]) -> bool:
    return spec["type"] == "choice" and len(spec["values"]) == 1


def _describe(spec: Mapping[str, Any]) -> str:
    """A mapped distribution in a few words, for warnings."""
    if spec["type"] == "choice":
        values = spec["values"]
        shown = _listed(values) if len(values) <= 6 else f"{len(values)} values from {values[0]:g} to {values[-1]:g}"
        return f"a choice of {shown}"
    text = f"{spec['type']} over [{spec['low']:g}, {spec['high']:g}]"
    if "step" in spec:
        text += f" step {spec['step']:g}"
    return text  # never a log range: qloguniform is described only when its log scale was dropped


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _listed(values: Sequence[Any]) -> str:
    return json.dumps(list(values))


def shown(value: Any) -> str:
    """A received value for a message: its type and a repr cut to one short line."""
    if value is None:
        return "nothing"
    text = repr(value)
    return f"the {type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
