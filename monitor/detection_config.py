"""Per-model detection settings: `infermon monitor --config FILE` (YAML), else the defaults.

The file holds `defaults` (for every model without its own entry) and `models` (one entry per
model name). A model's entry starts from `defaults` and replaces each key it sets: a model
that sets `window` gets its own window and the default reference. Every key is checked: a
mistake is a `UsageError` of one line naming the key's path, e.g.
`--config x.yaml: models.m.window.tumbling: '10 parsecs' is not a duration like 30s, 10m, 1h`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import yaml

from infermon.errors import UsageError
from monitor.drift.config import ColumnKind, Correction, DriftConfig, Multivariate, ThresholdMode
from monitor.outliers.detectors import Method

DEFAULT_REFERENCE_INSTANCES = 1000
DEFAULT_WINDOW_INSTANCES = 1000

# The statistics a user may name. The drift statistics registry (monitor.drift.statistics)
# should replace this tuple once it exists, so that each name is declared once.
KNOWN_TESTS = (
    "ks", "chisquare", "z", "cvm", "anderson", "psi", "jensenshannon", "wasserstein",
    "hellinger", "kl",
)  # fmt: skip
# The formats a reference file may have, by suffix.
REFERENCE_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class ReferenceSpec:
    """Where a model's reference comes from, when none is stored yet."""

    kind: Literal["first", "file", "range"] = "first"
    instances: int = DEFAULT_REFERENCE_INSTANCES  # kind "first": the model's first N instances
    path: Path | None = None  # kind "file": CSV, Parquet or JSON lines
    start: datetime | None = None  # kind "range": stored instances in [start, end)
    end: datetime | None = None


@dataclass(frozen=True)
class WindowSpec:
    kind: Literal["count", "tumbling", "sliding"] = "count"
    instances: int = DEFAULT_WINDOW_INSTANCES  # kind "count": every N instances
    length: timedelta | None = None  # time windows
    step: timedelta | None = None  # sliding windows: a new window every step


@dataclass(frozen=True)
class ModelDetection:
    reference: ReferenceSpec = field(default_factory=ReferenceSpec)
    window: WindowSpec = field(default_factory=WindowSpec)
    drift: DriftConfig = field(default_factory=DriftConfig)
    outliers: Method | None = "mahalanobis"  # None: no outlier scoring
    outlier_fpr: float = 0.01
    webhook: str | None = None  # POSTed when the model's drift state changes


@dataclass(frozen=True)
class DetectionConfig:
    default: ModelDetection = field(default_factory=ModelDetection)
    models: dict[str, ModelDetection] = field(default_factory=dict)

    def for_model(self, model: str) -> ModelDetection:
        return self.models.get(model, self.default)


class _Mistake(Exception):
    """A value that is wrong, at a key path; `load` turns it into a `UsageError`."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)


def load(path: Path) -> DetectionConfig:
    """The YAML file; a mistake in it is an `infermon.errors.UsageError` naming the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--config {path}: cannot read it: {error}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
        return _config(raw, path.parent)
    except yaml.YAMLError as error:
        raise UsageError(f"--config {path}: not valid YAML: {_yaml_problem(error)}") from None
    except _Mistake as mistake:
        raise UsageError(f"--config {path}: {mistake}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return str(error).splitlines()[0]


def _config(raw: object, folder: Path) -> DetectionConfig:
    if raw is None:  # an empty file: every default
        return DetectionConfig()
    top = _mapping(raw, "", ("defaults", "models"))
    default = ModelDetection()
    if top.get("defaults") is not None:
        default = _model(top["defaults"], "defaults", default, folder)
    models = {
        name: _model(entry, f"models.{name}", default, folder)
        for name, entry in _mapping(top.get("models") or {}, "models").items()
    }
    return DetectionConfig(default=default, models=models)


_MODEL_KEYS = (
    "reference", "window", "features", "kinds", "tests", "numeric_test", "categorical_test",
    "thresholds", "threshold", "threshold_mode", "correction", "drift_share", "n_bins",
    "multivariate", "mmd_sample", "mmd_permutations", "seed", "outliers", "webhook",
)  # fmt: skip


def _model(raw: object, where: str, base: ModelDetection, folder: Path) -> ModelDetection:
    entry = _mapping(raw if raw is not None else {}, where, _MODEL_KEYS)
    at = _joiner(where)
    changes: dict[str, Any] = {}
    if "reference" in entry:
        changes["reference"] = _reference(entry["reference"], at("reference"), folder)
    if "window" in entry:
        changes["window"] = _window(entry["window"], at("window"))
    if "outliers" in entry:
        changes["outliers"], changes["outlier_fpr"] = _outliers(entry["outliers"], at("outliers"))
    if "webhook" in entry:
        changes["webhook"] = _webhook(entry["webhook"], at("webhook"))
    drift = dataclasses.replace(base.drift, **_drift_changes(entry, at))
    return dataclasses.replace(base, drift=drift, **changes)


def _drift_changes(entry: Mapping[str, object], at: Callable[[str], str]) -> dict[str, Any]:
    readers: dict[str, Callable[[object, str], object]] = {
        "kinds": lambda v, w: _column_map(v, w, lambda x, xw: _choice(x, xw, _KINDS)),
        "tests": lambda v, w: _column_map(v, w, _test),
        "numeric_test": _test,
        "categorical_test": _test,
        "thresholds": lambda v, w: _column_map(v, w, _threshold),
        "threshold": _threshold,
        "threshold_mode": lambda v, w: _choice(v, w, get_args(ThresholdMode)),
        "correction": lambda v, w: _choice(v, w, get_args(Correction)),
        "drift_share": _share,
        "n_bins": lambda v, w: _int(v, w, minimum=2),
        "multivariate": lambda v, w: _choice(v, w, get_args(Multivariate)),
        "mmd_sample": lambda v, w: _int(v, w, minimum=2),
        "mmd_permutations": lambda v, w: _int(v, w, minimum=1),
        "seed": lambda v, w: _int(v, w, minimum=0),
    }
    changes = {key: read(entry[key], at(key)) for key, read in readers.items() if key in entry}
    if "features" in entry:
        changes["include"], changes["exclude"] = _features(entry["features"], at("features"))
    return changes


_KINDS: tuple[str, ...] = get_args(ColumnKind)
_METHODS: tuple[str, ...] = get_args(Method)


def _reference(raw: object, where: str, folder: Path) -> ReferenceSpec:
    forms = "one of {first: N}, {file: PATH}, {start: TIME, end: TIME}"
    entry = _mapping(raw, where, ("first", "file", "start", "end"))
    at = _joiner(where)
    if set(entry) == {"first"}:
        return ReferenceSpec(kind="first", instances=_int(entry["first"], at("first"), 1))
    if set(entry) == {"file"}:
        return ReferenceSpec(kind="file", path=_reference_file(entry["file"], at("file"), folder))
    if set(entry) == {"start", "end"}:
        start, end = _time(entry["start"], at("start")), _time(entry["end"], at("end"))
        if end <= start:
            raise _Mistake(at("end"), f"{end.isoformat()} is not after start {start.isoformat()}")
        return ReferenceSpec(kind="range", start=start, end=end)
    raise _Mistake(where, f"give {forms}, not {', '.join(entry) or 'nothing'}")


def _reference_file(raw: object, where: str, folder: Path) -> Path:
    if not isinstance(raw, str) or not raw:
        raise _Mistake(where, f"{_show(raw)} is not a file path")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else folder / path
    if path.suffix.lower() not in REFERENCE_SUFFIXES:
        raise _Mistake(where, f"{_show(raw)} is not {', '.join(REFERENCE_SUFFIXES)}")
    if not path.is_file():
        raise _Mistake(where, f"{_show(raw)}: no such file ({path})")
    return path


def _window(raw: object, where: str) -> WindowSpec:
    forms = "one of {instances: N}, {tumbling: DURATION}, {sliding: DURATION, step: DURATION}"
    entry = _mapping(raw, where, ("instances", "tumbling", "sliding", "step"))
    at = _joiner(where)
    if set(entry) == {"instances"}:
        return WindowSpec(kind="count", instances=_int(entry["instances"], at("instances"), 1))
    if set(entry) == {"tumbling"}:
        return WindowSpec(kind="tumbling", length=_duration(entry["tumbling"], at("tumbling")))
    if set(entry) == {"sliding", "step"}:
        length = _duration(entry["sliding"], at("sliding"))
        step = _duration(entry["step"], at("step"))
        if step > length:
            raise _Mistake(at("step"), f"{_show(entry['step'])} is longer than the window")
        return WindowSpec(kind="sliding", length=length, step=step)
    raise _Mistake(where, f"give {forms}, not {', '.join(entry) or 'nothing'}")


def _features(raw: object, where: str) -> tuple[list[str] | None, list[str]]:
    entry = _mapping(raw, where, ("include", "exclude"))
    at = _joiner(where)
    include = _names(entry["include"], at("include")) if "include" in entry else None
    exclude = _names(entry["exclude"], at("exclude")) if "exclude" in entry else []
    both = sorted(set(include or ()) & set(exclude))
    if both:
        raise _Mistake(where, f"{', '.join(both)} both included and excluded")
    return include, exclude


def _outliers(raw: object, where: str) -> tuple[Method | None, float]:
    if raw is None or raw is False or raw == "none":
        return None, ModelDetection.outlier_fpr
    entry = _mapping(raw, where, ("method", "fpr"))
    at = _joiner(where)
    method = _choice(entry.get("method", ModelDetection.outliers), at("method"), _METHODS)
    fpr = ModelDetection.outlier_fpr
    if "fpr" in entry:
        fpr = _share(entry["fpr"], at("fpr"), upper_open=True)
    return method, fpr  # type: ignore[return-value]  # one of Method's values, checked above


def _webhook(raw: object, where: str) -> str | None:
    if raw is None:
        return None
    parts = urlsplit(raw) if isinstance(raw, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Mistake(where, f"{_show(raw)} is not an http:// or https:// URL")
    return str(raw)


# Scalars


def _mapping(raw: object, where: str, known: Iterable[str] | None = None) -> dict[str, Any]:
    """`raw` as a mapping with text keys (numbers made text: columns may be named 0, 1, ...)."""
    if not isinstance(raw, dict):
        raise _Mistake(where or "(the file)", f"{_show(raw)} is not a mapping")
    entry: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise _Mistake(_joiner(where)(str(key)), "a key must be a name")
        entry[str(key)] = value
    if known is not None:
        allowed = tuple(known)
        for key in entry:
            if key not in allowed:
                raise _Mistake(_joiner(where)(key), f"unknown key (known: {', '.join(allowed)})")
    return entry


def _joiner(where: str) -> Callable[[str], str]:
    return lambda key: f"{where}.{key}" if where else key


def _column_map(
    raw: object, where: str, read: Callable[[object, str], Any]
) -> dict[str, Any]:  # fmt: skip
    at = _joiner(where)
    return {column: read(value, at(column)) for column, value in _mapping(raw, where).items()}


def _names(raw: object, where: str) -> list[str]:
    if not isinstance(raw, list):
        raise _Mistake(where, f"{_show(raw)} is not a list of column names")
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise _Mistake(where, f"{_show(item)} is not a column name")
    return [str(item) for item in raw]


_T = TypeVar("_T", bound=str)


def _choice(raw: object, where: str, choices: tuple[_T, ...]) -> _T:
    for choice in choices:
        if raw == choice:
            return choice
    raise _Mistake(where, f"{_show(raw)} is not one of {', '.join(choices)}")


def _test(raw: object, where: str) -> str:
    return _choice(raw, where, KNOWN_TESTS)


def _int(raw: object, where: str, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _Mistake(where, f"{_show(raw)} is not a whole number")
    if raw < minimum:
        raise _Mistake(where, f"{raw} is below {minimum}")
    return raw


def _number(raw: object, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise _Mistake(where, f"{_show(raw)} is not a number")
    return float(raw)


def _threshold(raw: object, where: str) -> float:
    value = _number(raw, where)
    if value <= 0:
        raise _Mistake(where, f"{_show(raw)} is not above 0")
    return value


def _share(raw: object, where: str, upper_open: bool = False) -> float:
    value = _number(raw, where)
    if not 0 < value <= 1 or (upper_open and value == 1):
        bounds = "between 0 and 1" if upper_open else "above 0 and at most 1"
        raise _Mistake(where, f"{_show(raw)} is not {bounds}")
    return value


def _duration(raw: object, where: str) -> timedelta:
    text = raw.strip() if isinstance(raw, str) else ""
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise _Mistake(where, f"{_show(raw)} is not a duration like 30s, 10m, 1h")
    seconds = sum(float(amount) * _DURATION_UNITS[unit] for amount, unit in parts)
    if seconds <= 0:
        raise _Mistake(where, f"{_show(raw)} is not longer than zero")
    return timedelta(seconds=seconds)


def _time(raw: object, where: str) -> datetime:
    moment = raw if isinstance(raw, datetime) else None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
    if moment is None:
        raise _Mistake(where, f"{_show(raw)} is not a time like 2026-01-01T00:00:00Z")
    if moment.tzinfo is None:
        raise _Mistake(where, f"{_show(raw)} has no UTC offset (add Z or +HH:MM)")
    return moment


def _show(raw: object) -> str:
    """A value for a message: quoted, cut when long."""
    if isinstance(raw, str):
        text = json.dumps(raw, ensure_ascii=False)
    else:
        text = raw.isoformat() if isinstance(raw, datetime) else repr(raw)
    return text if len(text) <= 60 else text[:60] + "..."
