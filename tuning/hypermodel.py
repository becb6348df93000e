"""What is searched: a `SearchSpace` declared on Keras Tuner's hyperparameters, and the hypermodel.

`sample` turns a trial's hyperparameters into the flat values `architecture.build_cnn` takes.
"""

from __future__ import annotations

import keras_tuner

from mnist_opt.tuning.architecture import build_cnn, compile_model
from mnist_opt.tuning.space import LATE_KEYS, Choice, Fixed, SearchSpace


def declare(hp: keras_tuner.HyperParameters, name: str, param):
    """Declare one space entry on `hp` and return its current value."""
    if isinstance(param, Fixed):
        return hp.Fixed(name, param.value)
    if isinstance(param, Choice) and isinstance(param.values[0], bool):
        # Keras Tuner's Choice turns bools into ints; Boolean keeps them bools.
        if len(param.values) == 1:
            return hp.Fixed(name, param.values[0])
        return hp.Boolean(name, default=param.values[0])
    if isinstance(param, Choice):
        return hp.Choice(name, list(param.values))
    if isinstance(param.min, int) and isinstance(param.max, int):
        return hp.Int(name, param.min, param.max, step=param.step or 1, sampling=param.sampling)
    return hp.Float(name, param.min, param.max, step=param.step, sampling=param.sampling)


def block_counts(param) -> list[int]:
    """Every number of conv blocks a `conv_blocks` entry allows."""
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Choice):
        return sorted(param.values)
    return list(range(param.min, param.max + 1, param.step or 1))


def sample(space: SearchSpace, hp: keras_tuner.HyperParameters) -> dict:
    """Declare the space on `hp` and return the flat values of this trial.

    Filters are searched per block, each only while its block exists
    (a Keras Tuner conditional scope on `conv_blocks`). The keys added since the first spaces (`space.LATE_KEYS`: the
    flip, the data's shape and classes) are declared last, and only when searched: Keras Tuner seeds each draw
    by its place among the active parameters, so a space that does not search them draws what it did before.
    """
    values = {key: declare(hp, key, param) for key, param in space.params.items()
              if key != "filters" and key not in LATE_KEYS}
    counts = block_counts(space.params["conv_blocks"])
    for b in range(max(counts)):
        with hp.conditional_scope("conv_blocks", [n for n in counts if n > b]):
            value = declare(hp, f"filters_{b}", space.params["filters"])
        if b < values["conv_blocks"]:
            values[f"filters_{b}"] = value
    late = {key: space.params[key] for key in LATE_KEYS}
    return values | {key: p.value if isinstance(p, Fixed) else declare(hp, key, p) for key, p in late.items()}


class CNNHyperModel(keras_tuner.HyperModel):
    """Keras Tuner hypermodel over a `SearchSpace`: builds and compiles, nothing else.

    Training (input pipeline, budgets, callbacks) belongs to the tuner (`tuning.tuners`, `tuning.recorder`).
    """

    def __init__(self, space: SearchSpace, steps_per_execution: int = 1, dtype: str | None = None):
        super().__init__(name=f"cnn_{space.name}")
        self.space, self.steps_per_execution, self.dtype = space, steps_per_execution, dtype

    def build(self, hp):
        values = sample(self.space, hp)
        model = build_cnn(values, dtype=self.dtype, fused_bn=True)  # Keras Tuner saves weights only
        compile_model(model, values, steps_per_execution=self.steps_per_execution)
        return model
