import pytest
from hypothesis import given, settings, strategies as st

from mnist_opt.errors import SearchSpaceError
from mnist_opt.tuning import space

GOOD = """
[hyperparameters]
conv_blocks = { choices = [1, 2] }
filters = { choices = [8, 16] }
dropout = { min = 0.0, max = 0.5, step = 0.1 }
learning_rate = { min = 1e-4, max = 1e-2, sampling = "log" }
batch_norm = true
"""


def test_builtin_spaces_load(seed):
    assert {"default", "tiny", "wide", "quick"} <= set(space.builtin_names())
    for name in space.builtin_names():
        s = space.load(name)
        assert set(s.params) == set(space.PARAMS)
        assert s.description


def test_good_space_parses_into_params(seed):
    s = space.parse(GOOD, "good.toml")
    assert s.params["conv_blocks"] == space.Choice((1, 2))
    assert s.params["dropout"] == space.Range(0.0, 0.5, 0.1, "linear")
    assert s.params["learning_rate"].sampling == "log"
    assert s.params["batch_norm"] == space.Fixed(True)
    assert s.params["kernel_size"] == space.Fixed(space.PARAMS["kernel_size"].default)


@pytest.mark.parametrize("body, expected", [
    ("conv_blocks = 2\n[hyperparameters]\nfoo = 1", "unknown top-level key 'conv_blocks'"),
    ("[hyperparameters]\nfilterz = 8", "hyperparameters.filterz: unknown key"),
    ("[hyperparameters]\nfilters = { choices = [] }", "filters: choices: expected a non-empty list"),
    ("[hyperparameters]\nfilters = { choices = [0, 16] }", "got [0, 16]"),
    ("[hyperparameters]\nfilters = { choices = [8.5] }", "expected an int in [1, 512]"),
    ("[hyperparameters]\nfilters = \"many\"", "filters: expected an int"),
    ("[hyperparameters]\ndropout = -0.1", "dropout: expected a number in [0.0, 1.0), got -0.1"),
    ("[hyperparameters]\ndropout = 1.0", "dropout: expected a number in [0.0, 1.0), got 1.0"),
    ("[hyperparameters]\ndropout = { min = 0.4, max = 0.2 }", "min 0.4 > max 0.2"),
    ("[hyperparameters]\nbatch_norm = 1", "batch_norm: expected true or false, got 1"),
    ("[hyperparameters]\nlearning_rate = { min = 0.001, max = 0.01, sampling = \"cubic\" }", "sampling"),
    ("[hyperparameters]\nconv_blocks = 4", "conv_blocks: expected an int in [1, 3], got 4"),
    ("[hyperparameters]\nfilters = { min = 8 }", "expected a value"),
    ("[hyperparameters\nfilters = 8", "not valid TOML"),
    ("description = 'no table'", "expected a [hyperparameters] table"),
])
def test_bad_space_names_file_key_and_value(seed, body, expected):
    with pytest.raises(SearchSpaceError) as info:
        space.parse(body, "bad.toml")
    assert "bad.toml" in str(info.value)
    assert expected in str(info.value)


def test_unknown_space_name_lists_builtins(seed):
    with pytest.raises(SearchSpaceError, match="default"):
        space.load("no-such-space")


START = """
[[start]]
conv_blocks = 2
filters = [16, 8]
dropout = 0.3
learning_rate = 0.005
"""


def test_starts_parse_into_flat_values_the_space_allows(seed):
    s = space.parse(GOOD + START + START.replace("[16, 8]", "[8]").replace("= 2", "= 1"), "good.toml")
    first, second = s.starts
    assert first == {**{k: p.value for k, p in s.params.items() if isinstance(p, space.Fixed)},
                     "conv_blocks": 2, "filters_0": 16, "filters_1": 8, "dropout": 0.3, "learning_rate": 0.005}
    assert "filters" not in first and second["conv_blocks"] == 1 and "filters_1" not in second
    assert space.parse(GOOD, "good.toml").starts == ()


def test_the_default_space_starts_from_small_batch_norm_gap_designs(seed):
    from mnist_opt.tuning.size import estimate_flash_bytes

    starts = space.load("default").starts
    assert len(starts) == 2
    for start in starts:
        assert start["batch_norm"] and start["global_pooling"] and start["dense_units"] == 0
        assert start["stem_stride"] == 2 and start["rotation"] > 0
        assert estimate_flash_bytes(start) <= 64 * 1024  # within the standard preset's budget
    assert [s["separable"] for s in starts] == [False, True]


@pytest.mark.parametrize("change, expected", [
    (("dropout = 0.3", ""), "start 1: dropout: missing; a starting point gives every searched hyperparameter"),
    (("dropout = 0.3", "dropout = 0.35"), "start 1: dropout: expected a value in the space's range [0.0, 0.5] "
                                          "on its steps of 0.1, got 0.35"),
    (("dropout = 0.3", "dropout = 0.6"), "dropout: expected a value in the space's range [0.0, 0.5]"),
    (("[16, 8]", "[16, 64]"), "start 1: filters: expected one of the space's choices [8, 16], got 64"),
    (("[16, 8]", "[16]"), "filters: expected a list of 2 values, one per conv block (conv_blocks = 2), got [16]"),
    (("[16, 8]", "16"), "filters: expected a list of 2 values"),
    (("conv_blocks = 2", "conv_blocks = 3"), "start 1: conv_blocks: expected one of the space's choices [1, 2], got 3"),
    (("dropout = 0.3", "dropout = 0.3\nbatch_norm = false"), "batch_norm: expected the space's fixed value True "
                                                              "(or leave it out), got False"),
    (("dropout = 0.3", "dropout = 0.3\nwidth = 2"), "start 1: width: unknown key"),
    (("learning_rate = 0.005", "learning_rate = '0.005'"), "learning_rate: expected a number"),
    (("[[start]]", "[[starts]]"), "unknown top-level key 'starts'; allowed: 'description', a [hyperparameters] "
                                  "table and [[start]] tables"),
])
def test_bad_starts_name_the_start_key_and_value(seed, change, expected):
    with pytest.raises(SearchSpaceError) as info:
        space.parse(GOOD + START.replace(*change), "bad.toml")
    assert "bad.toml" in str(info.value) and expected in str(info.value)


def test_a_start_that_is_not_a_table_is_refused(seed):
    with pytest.raises(SearchSpaceError, match="start: expected \\[\\[start\\]\\] tables"):
        space.parse("start = 3\n" + GOOD, "bad.toml")


def test_corners(seed):
    s = space.load("default")
    low, high = s.corner("low"), s.corner("high")
    assert low["conv_blocks"] == 2 and high["conv_blocks"] == 3
    assert low["filters"] == 16 and high["filters"] == 64


toml_scalars = st.one_of(st.integers(-5, 600), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                         st.text(max_size=5))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["min", "max", "step", "sampling", "choices", "x"]),
                                                 inner, max_size=4)), max_leaves=8)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(space.PARAMS) + ["bogus"]), toml_values, max_size=6),
       st.dictionaries(st.sampled_from(list(space.PARAMS) + ["bogus"]), toml_values, max_size=6),
       st.text(max_size=40))
def test_any_document_loads_or_raises_search_space_error(table, start, noise):
    doc = "[hyperparameters]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
    docs = [doc, doc + "[[start]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in start.items()), noise]
    for doc in docs:
        try:
            s = space.parse(doc, "fuzz.toml")
        except SearchSpaceError:
            continue
        for key, param in s.params.items():  # what loads is valid
            spec = space.PARAMS[key]
            vals = (param.value,) if isinstance(param, space.Fixed) else (
                param.values if isinstance(param, space.Choice) else (param.min, param.max))
            assert all(spec.accepts(v) for v in vals), (key, param)
        for values in s.starts:  # and so is every starting point
            assert values["conv_blocks"] in (1, 2, 3)
            assert all(space.PARAMS["filters"].accepts(values[f"filters_{b}"]) for b in range(values["conv_blocks"]))


def test_for_data_fixes_the_shape_and_classes_in_every_design_and_start():
    s = space.for_data(space.load("default"), (32, 24, 3), 5, digits=True)
    assert {k: s.params[k] for k in space.DATA_KEYS} == {
        "image_height": space.Fixed(32), "image_width": space.Fixed(24), "channels": space.Fixed(3),
        "classes": space.Fixed(5)}
    # Starts leave the fixed data keys out (Keras Tuner hashes a trial's values); the hypermodel fills them in.
    assert s.starts and not any(set(space.LATE_KEYS) & set(st) for st in s.starts)
    import keras_tuner

    from mnist_opt.tuning.hypermodel import CNNHyperModel, sample

    hp = keras_tuner.HyperParameters()
    sample(s, hp)
    hp.values.update(s.starts[0])
    model = CNNHyperModel(s).build(hp)
    assert model.input_shape == (None, 32, 24, 3) and model.output_shape == (None, 5)
    assert s.params["rotation"] == space.load("default").params["rotation"]  # digits: augmentation as written


def test_other_data_searches_flips_and_no_augmentation_in_the_builtin_spaces(tmp_path):
    s = space.for_data(space.load("default"), (28, 28, 1), 10, digits=False)
    assert s.params["flip"] == space.Choice((False, True)) and 0.0 in s.params["rotation"].values
    assert {(st["rotation"], st["zoom"], st["translation"], st["flip"]) for st in s.starts} == {
        (0.0, 0.0, 0.0, False), (0.0, 0.0, 0.1, True)}  # none, and flips with a mild shift
    own = tmp_path / "own.toml"
    own.write_text('[hyperparameters]\nrotation = 12.0\nflip = true\n')
    mine = space.for_data(space.load(str(own)), (28, 28, 1), 10, digits=False)
    assert mine.params["rotation"] == space.Fixed(12.0) and mine.params["flip"] == space.Fixed(True)  # as written


@pytest.mark.parametrize("doc, expected", [
    ("[hyperparameters]\nclasses = 3\n", "hyperparameters.classes: set by the data"),
    ("[hyperparameters]\n[[start]]\nconv_blocks = 2\nfilters = [32, 32]\nimage_height = 32\n",
     "image_height: set by the data, not by a starting point"),
])
def test_a_space_file_cannot_set_what_the_data_sets(doc, expected):
    with pytest.raises(SearchSpaceError, match=expected):
        space.parse(doc)
