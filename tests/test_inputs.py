import numpy as np
import tensorflow as tf

from mnist_opt.tuning import inputs


def _digits(n=16):
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 8:20, 12:16] = 255  # a bar: a "1"
    return x, np.arange(n) % 10


def test_batches_are_scaled_one_hot_and_complete(seed):
    x, y = _digits(20)
    batches = list(inputs.dataset(x, y, 8))
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]
    images, labels = batches[0]
    assert images.shape[1:] == (28, 28, 1) and images.dtype == tf.float32
    assert float(tf.reduce_max(images)) == 1.0 and float(tf.reduce_min(images)) == 0.0
    np.testing.assert_array_equal(np.argmax(labels, axis=1), y[:8])


def test_zero_augmentation_is_identity(seed):
    x, _ = _digits(4)
    images = inputs.to_inputs(x)
    out = inputs.augment(images, inputs.Augment(), tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(out.numpy(), images.numpy(), atol=1e-5)


def test_augmentation_moves_ink_but_keeps_most_of_it(seed):
    x, _ = _digits(64)
    images = inputs.to_inputs(x)
    out = inputs.augment(images, inputs.Augment(15, 0.1, 0.1), tf.constant([3, 4], tf.int64)).numpy()
    assert not np.allclose(out, images.numpy())
    ink_ratio = out.sum(axis=(1, 2, 3)) / images.numpy().sum(axis=(1, 2, 3))
    assert np.all(ink_ratio > 0.7) and np.all(ink_ratio < 1.4)


def test_seeded_pipeline_repeats_exactly(seed):
    x, y = _digits(32)
    aug = inputs.Augment(10, 0.1, 0.1)
    first = [b[0].numpy() for b in inputs.dataset(x, y, 8, aug, seed=seed)]
    second = [b[0].numpy() for b in inputs.dataset(x, y, 8, aug, seed=seed)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = [b[0].numpy() for b in inputs.dataset(x, y, 8, aug, seed=seed + 1)]
    assert not np.array_equal(first[0], other[0])


def test_stream_keeps_each_image_with_its_label_and_repeats_under_a_seed(seed):
    # Image i shows i in its first pixel and has label i % 10: a shuffled batch must keep the pairs.
    n = 50
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 0, 0] = np.arange(n)
    y = np.arange(n) % 10

    def batches(s):
        ds = inputs.stream(tf.constant(x), tf.constant(y), 8, None, s)
        return [(np.rint(b[0].numpy()[:, 0, 0, 0] * 255).astype(int), np.argmax(b[1].numpy(), axis=1))
                for b in ds.take(13)]  # two passes and a bit: batches run across the pass boundary

    first = batches(seed)
    for index, label in first:
        np.testing.assert_array_equal(label, index % 10)
    order = np.concatenate([index for index, _ in first])
    assert sorted(order[:n]) == list(range(n)) and sorted(order[n:2 * n]) == list(range(n))
    assert list(order[:n]) != list(order[n:2 * n])  # each pass is shuffled anew
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, batches(seed)))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, batches(seed + 1)))


def test_pipelines_run_without_autotuning():
    # With tf.data's autotuning on, ending an iterator waited up to 5 s for its tuning thread, at
    # every epoch's end and validation pass (see the module docstring); every pipeline turns it off.
    x, y = np.zeros((64, 28, 28), "uint8"), np.zeros(64, "int64")
    aug = inputs.Augment(rotation=10.0)
    for ds in (inputs.dataset(x, y, 16), inputs.dataset(x, y, 16, aug, seed=0), inputs.stream(x, y, 16, aug, 0)):
        assert ds.options().autotune.enabled is False


def test_flips_mirror_about_half_the_images_exactly_and_keep_rgb_non_square_shapes():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 12, 20, 3), dtype=np.uint8)
    images = inputs.to_inputs(x).numpy()
    out = inputs.augment(tf.constant(images), inputs.Augment(flip=True), tf.constant([5, 6], tf.int64)).numpy()
    assert out.shape == images.shape
    mirrored = np.array([np.allclose(o, i[:, ::-1], atol=1e-5) for o, i in zip(out, images)])
    kept = np.array([np.allclose(o, i, atol=1e-5) for o, i in zip(out, images)])
    assert np.all(mirrored ^ kept) and 70 <= mirrored.sum() <= 130


def test_the_one_hot_depth_is_the_data_s_class_count():
    x, y = np.zeros((6, 8, 8, 1), np.uint8), np.array([0, 1, 2, 0, 1, 2])
    (_, labels), = list(inputs.dataset(x, y, 6, classes=47))
    assert labels.shape == (6, 47)



def test_mnist_s_augmentation_draws_what_they_did_before_flips():
    """The transforms for a seed, as commit 6cedd1f made them: flips draw from a seed of their own."""
    t = inputs.transforms(4, inputs.Augment(10, 0.1, 0.1), tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_allclose(t.ravel()[:8], [1.00543, 0.12864, -3.94266, -0.12864, 1.00543, 2.82544, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(t.ravel()[-8:], [1.09048, -0.08051, 1.12723, 0.08051, 1.09048, -4.86337, 0.0, 0.0], atol=1e-4)
