import keras
import keras_tuner
import numpy as np
import pytest
import tf_keras

from mnist_opt.tuning import space
from mnist_opt.tuning.architecture import BASELINE, build_cnn, input_shape, layer_plan
from mnist_opt.tuning.hypermodel import CNNHyperModel, sample
from mnist_opt.tuning.size import ESTIMATE_ERROR, count_params, estimate_flash_bytes


def corner_values(space_name: str, which: str) -> dict:
    s = space.load(space_name)
    c = s.corner(which)
    values = {k: v for k, v in c.items() if k != "filters"}
    values.update({f"filters_{b}": c["filters"] for b in range(c["conv_blocks"])})
    return values


@pytest.mark.parametrize("space_name", ["default", "tiny"])
@pytest.mark.parametrize("which", ["low", "high"])
def test_corners_build_predict_and_match_param_count(seed, space_name, which):
    values = corner_values(space_name, which)
    model = build_cnn(values)
    assert model.count_params() == count_params(values)
    probs = model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_baseline_is_the_reference_cnn(seed):
    model = build_cnn(BASELINE)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert model.count_params() == count_params(BASELINE) == 32 * 10 + 14 * 14 * 32 * 10 + 10


def test_mixed_precision_build_keeps_float32_weights_and_output(seed):
    values = dict(corner_values("default", "high"), batch_norm=True, dropout=0.2)
    mixed, plain = build_cnn(values, dtype="mixed_bfloat16"), build_cnn(values)
    assert [w.dtype for w in mixed.weights] == [w.dtype for w in plain.weights] == ["float32"] * len(plain.weights)
    assert {layer.compute_dtype for layer in mixed.layers[1:-1]} == {"bfloat16"}
    assert mixed.layers[-1].compute_dtype == "float32" and mixed.output.dtype == "float32"
    plain.set_weights(mixed.get_weights())  # what train.train does after training
    x = np.random.default_rng(seed).random((8, 28, 28, 1), dtype="float32")
    np.testing.assert_allclose(mixed.predict(x, verbose=0), plain.predict(x, verbose=0), atol=0.02)


def test_same_values_build_same_layers_in_tf_keras(seed):
    values = dict(corner_values("default", "high"), batch_norm=True, dropout=0.2)
    k3, k2 = build_cnn(values, keras), build_cnn(values, tf_keras)
    assert [w.shape for w in k3.get_weights()] == [w.shape for w in k2.get_weights()]
    k2.set_weights(k3.get_weights())
    x = np.random.default_rng(seed).random((8, 28, 28, 1), dtype="float32")
    np.testing.assert_allclose(k3.predict(x, verbose=0), k2.predict(x, verbose=0), atol=1e-5)


def test_filters_are_declared_per_existing_block(seed):
    s = space.load("default")
    hp = keras_tuner.HyperParameters()
    hp.values["conv_blocks"] = 2
    values = sample(s, hp)
    assert {k for k in values if k.startswith("filters_")} == {"filters_0", "filters_1"}
    assert isinstance(values["batch_norm"], bool)
    model = CNNHyperModel(s).build(hp)
    assert model.optimizer is not None and model.count_params() == count_params(values)


@pytest.mark.parametrize("values", [
    BASELINE,
    corner_values("tiny", "low"),
    corner_values("default", "high"),
    dict(corner_values("default", "low"), conv_blocks=2, filters_1=24, batch_norm=True, global_pooling=True,
         dense_units=48),
    dict(corner_values("tiny", "high"), kernel_size=5, convs_per_block=2),
    # Other data: RGB, not square, many classes, small enough that a block's pooling is left out.
    dict(corner_values("default", "low"), image_height=32, image_width=32, channels=3, classes=3, separable=True,
         conv_blocks=3, filters_1=24, filters_2=32),
    dict(BASELINE, image_height=16, image_width=40, channels=3, classes=47, conv_blocks=2, filters_1=16),
    dict(corner_values("default", "high"), image_height=8, image_width=8, classes=2, global_pooling=False),
], ids=["baseline", "tiny-low", "default-high", "bn-gap-dense", "tiny-k5", "rgb32-separable", "16x40-47-classes",
        "8x8-flatten"])
@pytest.mark.parametrize("clusters", [None, 4, 16])
def test_flash_size_estimate_is_within_5_percent_of_the_real_flash_form(seed, values, clusters):
    """--max-kb, the budgets and the Pareto search trust this estimate: check it against the converter's file's
    flash form (with random weights, as large as the trained model's: tests/test_frontier.py), plain and
    clustered (every kernel the export clusters holding that many values, LUT-compressed)."""
    from mnist_opt.export.file_size import flash_bytes

    representative = np.random.default_rng(seed).random((20, *input_shape(values)), dtype="float32")
    real = flash_bytes(values, representative, clusters)
    estimate = estimate_flash_bytes(values, clusters)
    assert abs(estimate - real) <= ESTIMATE_ERROR * real, (estimate, real)


def test_batch_norm_models_can_be_judged_after_one_short_epoch(seed):
    """Hyperband ranks models after an epoch or two: the moving statistics must be usable by then."""
    from mnist_opt import data
    from mnist_opt.tuning import inputs
    from mnist_opt.tuning.architecture import compile_model

    split = data.load_split(seed)
    idx = data.stratified_indices(split.y_train, 4000, seed)
    values = dict(BASELINE, conv_blocks=2, filters_0=16, filters_1=32, batch_norm=True, dense_units=64)
    model = build_cnn(values)
    compile_model(model, values)
    history = model.fit(inputs.dataset(split.x_train[idx], split.y_train[idx], 64, seed=seed),
                        validation_data=inputs.dataset(split.x_val, split.y_val, 1000), epochs=1, verbose=0)
    train_acc, val_acc = history.history["accuracy"][0], history.history["val_accuracy"][0]
    assert val_acc > 0.8 and val_acc > train_acc - 0.1, (train_acc, val_acc)  # Keras' default 0.99: ~0.1


def _variables_made_in_steps(model, fit) -> list[str]:
    """Names of the variables created while TensorFlow traced `fit`'s steps."""
    import tensorflow as tf

    made = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            made.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        fit()
    return made


def test_compiled_model_makes_no_variable_in_its_first_step():
    """A variable made in a traced step makes TensorFlow trace it twice: for every trial, seconds."""
    from mnist_opt.tuning.architecture import compile_model

    values = dict(BASELINE, batch_norm=True)
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype="float32")
    y = np.eye(10, dtype="float32")[np.arange(16) % 10]

    model = build_cnn(values)
    compile_model(model, values, steps_per_execution=2)
    assert _variables_made_in_steps(model, lambda: model.fit(x, y, batch_size=4, validation_data=(x, y), verbose=0)) == []

    plain = build_cnn(values)  # what compile_model avoids: Keras makes Adam's slots in the first step
    plain.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    assert _variables_made_in_steps(plain, lambda: plain.fit(x, y, batch_size=4, verbose=0))


def test_loaded_weights_bring_back_adams_state(tmp_path):
    """Adam is built at compile time, so a checkpoint's Adam state loads with its weights (the search
    makes a promoted trial's Adam afresh: FreshOptimizer._build_hypermodel)."""
    from mnist_opt.tuning.architecture import compile_model

    values = dict(BASELINE)
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype="float32")
    y = np.eye(10, dtype="float32")[np.arange(16) % 10]
    parent = build_cnn(values)
    compile_model(parent, values)
    parent.fit(x, y, batch_size=4, verbose=0)
    parent.save_weights(tmp_path / "parent.weights.h5")

    child = build_cnn(values)
    compile_model(child, values)
    child.load_weights(tmp_path / "parent.weights.h5")
    assert int(child.optimizer.iterations) == int(parent.optimizer.iterations) == 4
    for a, b in zip(child.optimizer.variables, parent.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fused_batch_norm_trains_as_keras_does(seed):
    """The fused kernel is a faster route to Keras' own batch norm: same output, gradients and moving averages."""
    import tensorflow as tf

    from mnist_opt.tuning.architecture import BN_MOMENTUM
    from mnist_opt.tuning.fused_bn import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, (8, 7, 7, 5)).astype("float32"))
    layers = [cls(momentum=BN_MOMENTUM) for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)]
    results = []
    for layer in layers:
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 5))
        layer.beta.assign(np.linspace(-1.0, 1.0, 5))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y) * tf.range(5, dtype=tf.float32))  # nonlinear: a linear one has zero gradients
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance])
    for keras_own, fused in zip(*results):
        np.testing.assert_allclose(np.asarray(fused), np.asarray(keras_own), rtol=1e-4, atol=1e-4)
    assert not np.allclose(layers[1].moving_variance.numpy(), 1.0)  # the moving averages did move
    # Inference is Keras' own code: on the same variables, the same output.
    layers[0].set_weights(layers[1].get_weights())
    np.testing.assert_array_equal(layers[1](x, training=False).numpy(), layers[0](x, training=False).numpy())


def test_only_models_built_to_train_have_fused_batch_norm(seed):
    values = dict(corner_values("default", "high"), batch_norm=True)
    fused, plain = build_cnn(values, fused_bn=True), build_cnn(values)
    kinds = lambda m: {type(layer).__name__ for layer in m.layers if "Normalization" in type(layer).__name__}  # noqa: E731
    assert kinds(fused) == {"FusedBatchNormalization"} and kinds(plain) == {"BatchNormalization"}
    assert kinds(build_cnn(values, tf_keras, fused_bn=True)) == {"BatchNormalization"}  # tf_keras fuses by itself
    plain.set_weights(fused.get_weights())  # what train.train does before saving
    x = np.random.default_rng(seed).random((4, 28, 28, 1), dtype="float32")
    np.testing.assert_array_equal(fused.predict(x, verbose=0), plain.predict(x, verbose=0))


@pytest.mark.parametrize("channels", [8, 16])  # the kernel runs in float32 on 8, in bfloat16 on 16
def test_fused_batch_norm_in_mixed_bfloat16_matches_keras(seed, channels):
    import tensorflow as tf

    from mnist_opt.tuning.architecture import BN_MOMENTUM
    from mnist_opt.tuning.fused_bn import FusedBatchNormalization

    x = tf.cast(np.random.default_rng(seed).normal(2.0, 3.0, (8, 7, 7, channels)), tf.bfloat16)
    layers = [cls(momentum=BN_MOMENTUM, dtype="mixed_bfloat16")
              for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)]
    keras_own, fused = [(layer(x, training=True), layer.moving_mean, layer.moving_variance) for layer in layers]
    assert fused[0].dtype == keras_own[0].dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(fused[0], tf.float32), tf.cast(keras_own[0], tf.float32), atol=0.05)
    np.testing.assert_allclose(fused[1], keras_own[1], rtol=1e-3)
    np.testing.assert_allclose(fused[2], keras_own[2], rtol=1e-3)


@pytest.mark.parametrize("side, stride, pools", [(28, 1, 3), (8, 1, 3), (8, 2, 2), (9, 2, 2)])
def test_pooling_stops_where_the_map_is_down_to_one_pixel(side, stride, pools):
    """Three blocks that each end in pooling: an 8x8 image whose stem halves it has 1 pixel left after two."""
    values = dict(BASELINE, conv_blocks=3, filters_1=8, filters_2=8, pool_last=True, stem_stride=stride,
                  image_height=side, image_width=side, classes=4)
    assert [kind for kind, *_ in layer_plan(values)].count("pool") == pools
    model = build_cnn(values)  # builds: no pooling of a 1-pixel map
    assert model.output_shape == (None, 4) and model.count_params() == count_params(values)



# Keras Tuner's view of the default space and its first random draws, as commit 6cedd1f declared them: the keys
# added since (the flip, the data's shape and classes) are declared only when searched, so MNIST's searches draw
# what they drew.
DEFAULT_HP_NAMES = ['conv_blocks', 'convs_per_block', 'kernel_size', 'stem_stride', 'separable', 'transition', 'pool_last', 'batch_norm', 'global_pooling', 'dense_units', 'dropout', 'rotation', 'zoom', 'translation', 'learning_rate', 'label_smoothing', 'filters_0', 'filters_1', 'filters_2']
DEFAULT_DRAWS_SHA256 = "b9d458efc09c8ecf5bd6973a141339d4d230ee27c6310fc2b57c78d8a4ea32e2"  # RandomSearchOracle(seed=3), three draws


def test_mnist_s_search_declares_and_draws_what_it_did_before_other_data():
    import hashlib
    import json

    s = space.for_data(space.load("default"), (28, 28, 1), 10, digits=True)
    hp = keras_tuner.HyperParameters()
    sample(s, hp)
    assert [p.name for p in hp.space] == DEFAULT_HP_NAMES
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=5, seed=3)
    oracle.hyperparameters = hp
    draws = [oracle.populate_space(str(i))["values"] for i in range(3)]
    assert hashlib.sha256(json.dumps(draws, sort_keys=True).encode()).hexdigest() == DEFAULT_DRAWS_SHA256
