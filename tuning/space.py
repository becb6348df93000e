"""Search spaces: TOML files under search_spaces/, loaded and validated strictly.

A space file has an optional `description` and one table, `[hyperparameters]`.
Each key there is one of `PARAMS` and takes one of these forms:

    conv_blocks = 2                                  # fixed value
    filters = { choices = [16, 32, 64] }             # pick one
    dropout = { min = 0.0, max = 0.5, step = 0.1 }   # range (ints or floats)
    learning_rate = { min = 1e-4, max = 1e-2, sampling = "log" }

Keys left out take the fixed value in `PARAMS`. Any number of `[[start]]` tables
may follow: starting points, designs known to work, that every tuner trains first
(as Ray Tune's `points_to_evaluate` or Optuna's `enqueue_trial` do). A starting point
gives a value the space allows for every searched key, and `filters` as one value
per conv block:

    [[start]]
    conv_blocks = 2
    filters = [32, 32]
    dropout = 0.5
    ...

Validation names the file, the key, the bad value and the allowed form, and nothing
is written on error.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Union

from mnist_opt.errors import SearchSpaceError


@dataclass(frozen=True)
class Spec:
    """What one hyperparameter may be: its type, allowed interval, and default."""

    kind: type  # int, float or bool
    low: float | None
    high: float | None
    high_open: bool  # True when `high` itself is not allowed
    default: object
    help: str

    def allowed(self) -> str:
        if self.kind is bool:
            return "true or false"
        name = "an int" if self.kind is int else "a number"
        hi = ")" if self.high_open else "]"
        return f"{name} in [{self.low}, {'inf' if self.high is None else self.high}{hi}"

    def accepts(self, value) -> bool:
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value) or value < self.low:
            return False
        if self.high is None:
            return True
        return value < self.high if self.high_open else value <= self.high


PARAMS: dict[str, Spec] = {
    "conv_blocks": Spec(int, 1, 3, False, 2, "conv blocks, each ending in 2x2 max pooling (28 -> 3 px after 3; "
                        "none once a map is down to 1 px)"),
    "convs_per_block": Spec(int, 1, 3, False, 1, "conv layers in each block"),
    "filters": Spec(int, 1, 512, False, 32, "filters of each block's convs (one value per block is searched)"),
    "kernel_size": Spec(int, 1, 7, False, 3, "conv kernel size"),
    "stem_stride": Spec(int, 1, 2, False, 1, "stride of the first conv: 2 halves the image before any other layer"),
    "separable": Spec(bool, None, None, False, False, "depthwise-separable convs (depthwise + 1x1) after the first conv"),
    "transition": Spec(bool, None, None, False, False, "a 1x1 conv to the block's width at the start of blocks 2 and 3"),
    "pool_last": Spec(bool, None, None, False, True, "the last block ends in max pooling too (off: the head sees its map)"),
    "batch_norm": Spec(bool, None, None, False, False, "batch normalization after each conv"),
    "global_pooling": Spec(bool, None, None, False, False, "global average pooling instead of flatten"),
    "dense_units": Spec(int, 0, 4096, False, 0, "hidden dense units before the classifier; 0 = none"),
    "dropout": Spec(float, 0.0, 1.0, True, 0.0, "dropout before the dense layers"),
    "rotation": Spec(float, 0.0, 180.0, False, 0.0, "augmentation: max rotation in degrees; 0 = off"),
    "zoom": Spec(float, 0.0, 1.0, True, 0.0, "augmentation: max zoom as a fraction; 0 = off"),
    "translation": Spec(float, 0.0, 1.0, True, 0.0, "augmentation: max shift as a fraction of the image's side; 0 = off"),
    "flip": Spec(bool, None, None, False, False, "augmentation: mirror half the images left to right"),
    "learning_rate": Spec(float, 1e-6, 1.0, False, 1e-3, "Adam learning rate"),
    "label_smoothing": Spec(float, 0.0, 1.0, True, 0.0, "label smoothing of the loss"),
    # Set by the data (`for_data`), never by a space file: the model's input and its classes. The defaults are
    # MNIST's, so that a best_hparams.json from before they existed rebuilds its model.
    "image_height": Spec(int, 8, 96, False, 28, "input height in pixels (set by the data)"),
    "image_width": Spec(int, 8, 96, False, 28, "input width in pixels (set by the data)"),
    "channels": Spec(int, 1, 3, False, 1, "input channels, 1 (grey) or 3 (RGB) (set by the data)"),
    "classes": Spec(int, 2, 100000, False, 10, "classes of the output layer (set by the data)"),
}



@dataclass(frozen=True)
class Fixed:
    value: object


@dataclass(frozen=True)
class Choice:
    values: tuple


@dataclass(frozen=True)
class Range:
    min: float
    max: float
    step: float | None = None
    sampling: str = "linear"


Param = Union[Fixed, Choice, Range]

DATA_KEYS = ("image_height", "image_width", "channels", "classes")
# Keys added since the first spaces: declared to Keras Tuner last, and only when searched (`hypermodel.sample`),
# and left out of the starting points the oracle holds when fixed, so that Keras Tuner draws and dedupes as it
# did before them (it seeds each draw by its place among the declared parameters, and hashes a trial's values).
LATE_KEYS = ("flip", *DATA_KEYS)
AUGMENTATION_KEYS = ("rotation", "zoom", "translation", "flip")
# The built-in spaces' augmentation matches handwriting. For other data (photographed objects, 7-segment
# displays, letters...) they search this instead: none, flips, and mild shifts and zooms. The digits'
# rotation 10 / zoom 0.1 / shift 0.1 cost 2.7 points on a 28x28 data set of photographed objects: 89.6% against
# 92.3% with flips alone, same design and recipe (issue #45). Their first starting point trains with no
# augmentation, the others with flips and a 10% shift.
OBJECT_AUGMENTATION = {"rotation": Choice((0.0, 10.0)), "zoom": Choice((0.0, 0.1)),
                       "translation": Choice((0.0, 0.1)), "flip": Choice((False, True))}
OBJECT_STARTS = ({"rotation": 0.0, "zoom": 0.0, "translation": 0.0, "flip": False},
                 {"rotation": 0.0, "zoom": 0.0, "translation": 0.1, "flip": True})


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: str
    text: str
    description: str
    params: dict[str, Param]
    starts: tuple[dict, ...] = ()  # flat values (filters_0, filters_1, ...), as `hypermodel.sample` gives
    builtin: bool = False  # one of search_spaces/: its augmentation is for digits, and `for_data` adapts it

    def corner(self, which: str) -> dict[str, object]:
        """The smallest ("low") or largest ("high") value of every hyperparameter."""
        pick = min if which == "low" else max
        out = {}
        for key, p in self.params.items():
            if isinstance(p, Fixed):
                out[key] = p.value
            elif isinstance(p, Choice):
                out[key] = pick(p.values)
            else:
                out[key] = pick(p.min, p.max)
        return out


def data_values(shape: tuple[int, int, int], classes: int) -> dict:
    """The data keys' values for images of `shape` (height, width, channels) in `classes` classes."""
    return dict(zip(DATA_KEYS, (*shape, classes)))


def for_data(space: SearchSpace, shape: tuple[int, int, int], classes: int, digits: bool) -> SearchSpace:
    """`space` for data of `shape` (height, width, channels) and `classes`: those fixed in every design and
    starting point; for a built-in space and data other than digits, `OBJECT_AUGMENTATION` searched instead
    of the digits' (a space file of your own is taken as written)."""
    params = space.params | {key: Fixed(value) for key, value in data_values(shape, classes).items()}
    starts = list(space.starts)
    if space.builtin and not digits:
        params |= OBJECT_AUGMENTATION
        starts = [start | OBJECT_STARTS[min(i, len(OBJECT_STARTS) - 1)] for i, start in enumerate(starts)]
    late_fixed = {key for key in LATE_KEYS if isinstance(params[key], Fixed)}  # `sample` fills them in
    starts = [{k: v for k, v in start.items() if k not in late_fixed} for start in starts]
    return SearchSpace(space.name, space.path, space.text, space.description, params, tuple(starts), space.builtin)


def builtin_names() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in resources.files("mnist_opt.search_spaces").iterdir()
                  if p.name.endswith(".toml"))


def resolve(name_or_path: str) -> Path:
    """A built-in space name (`default`, `tiny`) or a path to a .toml file."""
    builtin = resources.files("mnist_opt.search_spaces") / f"{name_or_path}.toml"
    if "/" not in name_or_path and not name_or_path.endswith(".toml") and builtin.is_file():
        return Path(str(builtin))
    path = Path(name_or_path)
    if not path.is_file():
        raise SearchSpaceError(f"search space {name_or_path!r}: no such file or built-in space; "
                               f"use one of {builtin_names()} or a path to a .toml file")
    return path


def load(name_or_path: str) -> SearchSpace:
    path = resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"{path}: cannot read search space ({exc})") from exc
    space = parse(text, str(path))
    return replace(space, builtin=path.parent == Path(str(resources.files("mnist_opt.search_spaces"))))


def parse(text: str, where: str = "<string>") -> SearchSpace:
    """Parse and validate a search space document; raise SearchSpaceError on any problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SearchSpaceError(f"{where}: not valid TOML ({exc})") from exc
    unknown = set(doc) - {"description", "hyperparameters", "start"}
    if unknown:
        raise SearchSpaceError(f"{where}: unknown top-level key {sorted(unknown)[0]!r}; "
                               "allowed: 'description', a [hyperparameters] table and [[start]] tables")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SearchSpaceError(f"{where}: description: expected a string, got {description!r}")
    table = doc.get("hyperparameters")
    if not isinstance(table, dict):
        raise SearchSpaceError(f"{where}: expected a [hyperparameters] table, got {table!r}")
    params: dict[str, Param] = {key: Fixed(spec.default) for key, spec in PARAMS.items()}
    for key, raw in table.items():
        if key in DATA_KEYS:
            raise SearchSpaceError(f"{where}: hyperparameters.{key}: set by the data (its images and classes), "
                                   "not by a search space; remove it")
        if key not in PARAMS:
            raise SearchSpaceError(f"{where}: hyperparameters.{key}: unknown key; "
                                   f"allowed keys: {', '.join(k for k in PARAMS if k not in DATA_KEYS)}")
        params[key] = _param(raw, PARAMS[key], f"{where}: hyperparameters.{key}")
    starts = doc.get("start", [])
    if not isinstance(starts, list):
        raise SearchSpaceError(f"{where}: start: expected [[start]] tables, one per starting point, got {starts!r}")
    starts = tuple(_start(raw, params, f"{where}: start {i + 1}") for i, raw in enumerate(starts))
    name = Path(where).stem if where.endswith(".toml") else where
    return SearchSpace(name, where, text, description, params, starts)


def _start(raw, params: dict[str, Param], where: str) -> dict:
    """One [[start]] table as flat values, each one the space allows."""
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{where}: expected a [[start]] table of hyperparameter values, got {raw!r}")
    if unknown := sorted(set(raw) - set(PARAMS)):
        raise SearchSpaceError(f"{where}: {unknown[0]}: unknown key; allowed keys: {', '.join(k for k in PARAMS if k not in DATA_KEYS)}")
    if data_keys := sorted(set(raw) & set(DATA_KEYS)):
        raise SearchSpaceError(f"{where}: {data_keys[0]}: set by the data, not by a starting point; remove it")
    values = {key: _start_value(raw, key, param, where) for key, param in params.items() if key != "filters"}
    blocks, filters = values["conv_blocks"], raw.get("filters")
    if filters is None and isinstance(params["filters"], Fixed):
        filters = [params["filters"].value] * blocks
    if not isinstance(filters, list) or len(filters) != blocks:
        raise SearchSpaceError(f"{where}: filters: expected a list of {blocks} values, one per conv block "
                               f"(conv_blocks = {blocks}), got {filters!r}")
    for b, f in enumerate(filters):
        values[f"filters_{b}"] = _allowed(f, "filters", params["filters"], where)
    return values


def _start_value(raw: dict, key: str, param: Param, where: str):
    """`raw[key]` if the space allows it (a fixed key may be left out)."""
    if key not in raw:
        if isinstance(param, Fixed):
            return param.value
        raise SearchSpaceError(f"{where}: {key}: missing; a starting point gives every searched hyperparameter")
    return _allowed(raw[key], key, param, where)


def _allowed(raw, key: str, param: Param, where: str):
    """`raw`, a starting point's value for `key`, as the space's type; if the space allows it."""
    spec = PARAMS[key]
    _check_value(raw, spec, f"{where}: {key}")
    value = _coerce(raw, spec)
    if isinstance(param, Fixed):
        allowed, form = value == param.value, f"the space's fixed value {param.value!r} (or leave it out)"
    elif isinstance(param, Choice):
        allowed, form = value in param.values, f"one of the space's choices {list(param.values)}"
    else:
        steps = None if param.step is None else (value - param.min) / param.step
        on_step = steps is None or math.isclose(steps, round(steps), abs_tol=1e-6)
        allowed = param.min <= value <= param.max and on_step
        form = f"a value in the space's range [{param.min}, {param.max}]" + (
            "" if param.step is None else f" on its steps of {param.step}")
    if not allowed:
        raise SearchSpaceError(f"{where}: {key}: expected {form}, got {raw!r}")
    return value


def _param(raw, spec: Spec, where: str) -> Param:
    form = (f"a value, {{ choices = [...] }}" +
            ("" if spec.kind is bool else ", or { min, max, step?, sampling? }") +
            f", each value {spec.allowed()}")
    if not isinstance(raw, dict):
        _check_value(raw, spec, where)
        return Fixed(_coerce(raw, spec))
    keys = set(raw)
    if keys == {"choices"}:
        values = raw["choices"]
        if not isinstance(values, list) or not values:
            raise SearchSpaceError(f"{where}: choices: expected a non-empty list of {spec.allowed()}, got {values!r}")
        for v in values:
            _check_value(v, spec, f"{where}: choices", values)
        coerced = tuple(dict.fromkeys(_coerce(v, spec) for v in values))
        return Choice(coerced)
    if spec.kind is not bool and {"min", "max"} <= keys <= {"min", "max", "step", "sampling"}:
        lo, hi = raw["min"], raw["max"]
        _check_value(lo, spec, f"{where}: min")
        _check_value(hi, spec, f"{where}: max")
        if lo > hi:
            raise SearchSpaceError(f"{where}: min {lo!r} > max {hi!r}; expected min <= max")
        step = raw.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))
                                 or not step > 0 or (spec.kind is int and not isinstance(step, int))):
            raise SearchSpaceError(f"{where}: step: expected a positive {spec.kind.__name__}, got {step!r}")
        sampling = raw.get("sampling", "linear")
        if sampling not in ("linear", "log"):
            raise SearchSpaceError(f"{where}: sampling: expected 'linear' or 'log', got {sampling!r}")
        if sampling == "log" and lo <= 0:
            raise SearchSpaceError(f"{where}: sampling 'log' needs min > 0, got min {lo!r}")
        if sampling == "log" and step is not None:
            raise SearchSpaceError(f"{where}: step and sampling 'log' cannot go together; drop one")
        return Range(_coerce(lo, spec), _coerce(hi, spec), step, sampling)
    raise SearchSpaceError(f"{where}: expected {form}; got {raw!r}")


def _check_value(value, spec: Spec, where: str, whole=None) -> None:
    if not spec.accepts(value):
        got = value if whole is None else whole
        raise SearchSpaceError(f"{where}: expected {spec.allowed()}, got {got!r}")


def _coerce(value, spec: Spec):
    return float(value) if spec.kind is float else value
