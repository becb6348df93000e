"""The data layer: MNIST by default, any data set in three forms, one normalized form out, a seeded split,
a held-out test split where the data has none, and every bad input refused with the file and the fix."""

import gzip

import numpy as np
import pytest
from PIL import Image

from mnist_opt import data
from mnist_opt.errors import DataError


def test_bundled_copy_is_mnist(seed):
    loaded = data.load()
    assert loaded.info.source == str(data.BUNDLED) and loaded.info.form == "mnist" and loaded.info.digits
    assert loaded.info.content_sha256 == data.CONTENT_SHA256
    assert loaded.info.shape == (28, 28, 1) and loaded.info.class_names == tuple("0123456789")
    assert loaded.info.test == "given"
    assert loaded.arrays["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(loaded.arrays["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_split_is_stratified_seeded_and_never_touches_test(seed):
    s = data.load_split(seed)
    assert len(s.y_train) == 54000 and len(s.y_val) == 6000
    assert not set(s.train_index) & set(s.val_index)
    assert sorted(np.concatenate([s.train_index, s.val_index]).tolist()) == list(range(60000))
    arrays = data.load().arrays
    # Both halves are exactly MNIST's training images at those positions: no test image.
    np.testing.assert_array_equal(s.x_val, arrays["x_train"][s.val_index])
    np.testing.assert_array_equal(s.x_train, arrays["x_train"][s.train_index])
    frac = np.bincount(s.y_val, minlength=10) / np.bincount(arrays["y_train"], minlength=10)
    assert np.allclose(frac, 0.1, atol=0.002)
    again = data.load_split(seed)
    np.testing.assert_array_equal(again.val_index, s.val_index)
    assert not np.array_equal(data.load_split(seed + 1).val_index, s.val_index)


def test_explicit_path_and_env_take_precedence(seed, tmp_path, monkeypatch):
    copy = tmp_path / "mnist.npz"
    copy.write_bytes(data.BUNDLED.read_bytes())
    assert data.resolve_path(copy) == copy
    monkeypatch.setenv("MNIST_NPZ", str(copy))
    assert data.resolve_path() == copy
    assert data.load().info.form == "mnist"  # MNIST by its content, wherever it lies


def unique_images(n: int, shape: tuple, seed: int = 0) -> np.ndarray:
    """n different uint8 images: image i carries i in its first two pixels, noise elsewhere."""
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    flat = x.reshape(n, -1)
    flat[:, 0], flat[:, 1] = np.arange(n) // 256, np.arange(n) % 256
    return x


def balanced_labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def test_an_npz_without_a_test_split_has_one_held_out_stratified_and_the_same_every_time(tmp_path):
    x, y = unique_images(600, (12, 12)), balanced_labels(600, 3)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, class_names=np.array(["cat", "dog", "cow"]))
    loaded = data.load(str(tmp_path / "d.npz"))
    info, a = loaded.info, loaded.arrays
    assert info.form == "npz" and info.test == "held out" and info.shape == (12, 12, 1) and info.classes == 3
    assert info.class_names == ("cat", "dog", "cow") and not info.digits
    assert len(a["y_test"]) == 90 and np.bincount(a["y_test"]).tolist() == [30, 30, 30]  # 15%, stratified
    assert info.to_dict()["test_split"] == {"fraction": data.TEST_FRACTION, "seed": data.HOLDOUT_SEED, "stratified": True}
    split = data.load_split(5, str(tmp_path / "d.npz"))
    ids = lambda images: {int(i[0, 0, 0]) * 256 + int(i[0, 1, 0]) for i in images}  # noqa: E731
    test, train, val = ids(a["x_test"]), ids(split.x_train), ids(split.x_val)
    assert not test & (train | val) and not train & val and len(test | train | val) == 600
    assert np.array_equal(data.load(str(tmp_path / "d.npz")).arrays["x_test"], a["x_test"])  # same hold-out
    assert data.load_split(6, str(tmp_path / "d.npz")).info.content_sha256 == info.content_sha256


@pytest.mark.parametrize("dtype", ["uint8", "float32", "int64"])
def test_npz_images_in_each_dtype_and_rgb_become_uint8_nhwc(tmp_path, dtype):
    x = unique_images(40, (10, 9, 3))
    stored = x.astype(dtype) / 255.0 if dtype == "float32" else x.astype(dtype)
    np.savez(tmp_path / "d.npz", x_train=stored, y_train=balanced_labels(40, 2), x_test=stored[:10],
             y_test=balanced_labels(10, 2))
    loaded = data.load(str(tmp_path / "d.npz"))
    assert loaded.info.shape == (10, 9, 3) and loaded.info.test == "given" and loaded.info.class_names == ("0", "1")
    assert loaded.arrays["x_train"].dtype == np.uint8
    np.testing.assert_array_equal(loaded.arrays["x_train"], x)  # floats x 255, rounded: the same levels


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    dims = array.ndim
    raw = bytes([0, 0, 0x08, dims]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [True, False])
def test_an_idx_folder_reads_gzipped_or_not(tmp_path, gz):
    x, y = unique_images(200, (14, 14)), balanced_labels(200, 4).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y, gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", x[:40], gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", y[:40], gz)
    loaded = data.load(str(tmp_path))
    assert loaded.info.form == "idx" and loaded.info.shape == (14, 14, 1) and loaded.info.test == "given"
    np.testing.assert_array_equal(loaded.arrays["x_train"][..., 0], x)
    np.testing.assert_array_equal(loaded.arrays["y_test"], y[:40])


def write_folder(root, classes: list[str], per_class: int, size=(16, 12), mode="RGB", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")


def test_a_folder_of_class_folders_under_train_and_test(tmp_path):
    write_folder(tmp_path / "train", ["red", "green", "blue"], 6)
    write_folder(tmp_path / "test", ["red", "green", "blue"], 2, seed=1)
    lines = []
    loaded = data.load(str(tmp_path), lines.append)
    info = loaded.info
    assert info.form == "folder" and info.shape == (12, 16, 3) and info.class_names == ("blue", "green", "red")
    assert info.test == "given" and info.images == {"train": 18, "test": 6}
    assert np.bincount(loaded.arrays["y_train"]).tolist() == [6, 6, 6]
    assert any("18/18" in line for line in lines)  # progress while a folder loads
    first = np.asarray(Image.open(tmp_path / "train" / "blue" / "0.png"))
    np.testing.assert_array_equal(loaded.arrays["x_train"][0], first)


@pytest.mark.parametrize("under", ["", "train"])
def test_a_folder_of_grey_images_without_test_gets_a_held_out_test_split(tmp_path, under):
    write_folder(tmp_path / under, ["a", "b"], 20, size=(10, 10), mode="L")
    loaded = data.load(str(tmp_path))
    assert loaded.info.shape == (10, 10, 1) and loaded.info.test == "held out" and loaded.info.images["test"] == 6
    assert loaded.info.class_names == ("a", "b")


def test_a_test_folder_without_train_is_refused(tmp_path):
    write_folder(tmp_path / "test", ["a", "b"], 2)
    with pytest.raises(DataError, match="has test/ but no train/"):
        data.load(str(tmp_path))


def test_forty_seven_unbalanced_classes(tmp_path):
    y = np.concatenate([np.full(5 + 3 * c, c) for c in range(47)])
    x = unique_images(len(y), (8, 8))
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    split = data.load_split(0, str(tmp_path / "d.npz"))
    assert split.info.classes == 47 and split.info.shape == (8, 8, 1)
    assert set(np.unique(split.y_train)) == set(range(47))


def test_image_size_resizes_every_form_and_changes_the_hash(tmp_path):
    write_folder(tmp_path / "f", ["a", "b"], 4, size=(20, 30))  # mixed sizes need --image-size
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "f" / "a" / "big.png")
    with pytest.raises(DataError, match="2 sizes .*--image-size"):
        data.load(str(tmp_path / "f"))
    loaded = data.load(data.Source(str(tmp_path / "f"), (16, 24)))
    assert loaded.info.shape == (16, 24, 3) and loaded.arrays["x_train"].shape[1:] == (16, 24, 3)
    np.savez(tmp_path / "big.npz", x_train=unique_images(20, (100, 100)), y_train=balanced_labels(20, 2))
    with pytest.raises(DataError, match="100x100.*--image-size"):
        data.load(str(tmp_path / "big.npz"))
    small = data.load(data.Source(str(tmp_path / "big.npz"), (32, 32)))
    assert small.info.shape == (32, 32, 1)
    assert small.info.content_sha256 != data.load(data.Source(str(tmp_path / "big.npz"), (24, 24))).info.content_sha256


@pytest.mark.parametrize("text, expected", [("32", (32, 32)), ("24x40", (24, 40)), (" 8X96 ", (8, 96)), (None, None)])
def test_image_size_parses(text, expected):
    assert data.parse_image_size(text) == expected


@pytest.mark.parametrize("text", ["7", "97", "32x", "ax3", "0x0", "32x200"])
def test_a_bad_image_size_is_refused(text):
    with pytest.raises(DataError, match="--image-size: expected H or HxW"):
        data.parse_image_size(text)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _base(n=30):
    return {"x_train": unique_images(n, (12, 12)), "y_train": balanced_labels(n, 3)}


@pytest.mark.parametrize("case, expected", [
    ("label_out_of_range", "label 5, outside 0..2 (3 class names)"),
    ("negative_label", "holds label -1"),
    ("float_label", "not integers"),
    ("lengths", "30 images but y_train 29 labels"),
    ("one_class", "one class"),
    ("gap", "class 1 has no training images"),
    ("nan", "NaN"),
    ("float_range", "floats from 0 to 2"),
    ("int_range", "integers from 0 to 300"),
    ("too_big", "100x100"),
    ("too_small", "4x4"),
    ("pickled", "pickled Python objects"),
    ("no_y", "missing arrays ['y_train']"),
    ("only_x_test", "only one of x_test and y_test"),
    ("channels", "with C = 1 (grey) or 3 (RGB)"),
    ("test_size", "test images are 10x10x1, training images 12x12x1"),
    ("not_zip", "not a zip archive"),
    ("missing", "no such file or folder"),
])
def test_bad_npz_data_is_named_with_the_fix(tmp_path, case, expected):
    base, p = _base(), tmp_path / "d.npz"
    if case == "label_out_of_range":
        y = base["y_train"].copy()
        y[0] = 5
        path = _npz(p, **base | {"y_train": y}, class_names=np.array(["a", "b", "c"]))
    elif case == "negative_label":
        path = _npz(p, **base | {"y_train": base["y_train"] - 1})
    elif case == "float_label":
        path = _npz(p, **base | {"y_train": base["y_train"] + 0.5})
    elif case == "lengths":
        path = _npz(p, **base | {"y_train": base["y_train"][:29]})
    elif case == "one_class":
        path = _npz(p, **base | {"y_train": np.zeros(30, int)})
    elif case == "gap":
        path = _npz(p, **base | {"y_train": base["y_train"] * 2 % 4 // 2 * 2})  # classes 0 and 2 only
    elif case == "nan":
        x = base["x_train"] / 255.0
        x[3, 2, 2] = np.nan
        path = _npz(p, **base | {"x_train": x})
    elif case == "float_range":
        path = _npz(p, **base | {"x_train": base["x_train"] / 127.5})
    elif case == "int_range":
        x = base["x_train"].astype(np.int32)
        x[0, 0, 0] = 300
        x[0, 0, 1] = 0
        path = _npz(p, **base | {"x_train": x})
    elif case == "too_big":
        path = _npz(p, **base | {"x_train": unique_images(30, (100, 100))})
    elif case == "too_small":
        path = _npz(p, **base | {"x_train": unique_images(30, (4, 4))})
    elif case == "pickled":
        np.savez(p, x_train=np.array([{"a": 1}] * 30, dtype=object), y_train=base["y_train"])
        path = str(p)
    elif case == "no_y":
        path = _npz(p, x_train=base["x_train"])
    elif case == "only_x_test":
        path = _npz(p, **base, x_test=base["x_train"])
    elif case == "channels":
        path = _npz(p, **base | {"x_train": unique_images(30, (12, 12, 4))})
    elif case == "test_size":
        path = _npz(p, **base, x_test=unique_images(6, (10, 10)), y_test=balanced_labels(6, 3))
    elif case == "not_zip":
        p.write_text("hello")
        path = str(p)
    else:
        path = str(p)
    with pytest.raises(DataError) as info:
        data.load(path)
    assert path in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("case, expected", [
    ("magic", "wrong magic number"),
    ("dims", r"with 2 dimensions; expected unsigned bytes \(0x08\) with 3"),
    ("truncated", "the file is truncated"),
    ("no_labels", "no train-labels-idx1-ubyte"),
    ("bad_gzip", "cannot be read"),
])
def test_bad_idx_files_are_named(tmp_path, case, expected):
    x, y = unique_images(20, (10, 10)), balanced_labels(20, 2).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", x, False)
    if case != "no_labels":
        write_idx(tmp_path / "train-labels-idx1-ubyte", y, False)
    images = tmp_path / "train-images-idx3-ubyte"
    if case == "magic":
        images.write_bytes(b"\x08\x03\x00\x00" + images.read_bytes()[4:])
    elif case == "dims":
        write_idx(images, x.reshape(20, 100), False)
    elif case == "truncated":
        images.write_bytes(images.read_bytes()[:-7])
    elif case == "bad_gzip":
        images.unlink()
        (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images.name.encode())[:12])
    with pytest.raises(DataError, match=expected) as info:
        data.load(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_bad_image_folders_are_named_and_unreadable_images_skipped_only_when_asked(tmp_path):
    write_folder(tmp_path / "ok", ["a", "b"], 5)
    (tmp_path / "ok" / "empty").mkdir()
    with pytest.raises(DataError, match="empty: class folder with no images"):
        data.load(str(tmp_path / "ok"))
    (tmp_path / "ok" / "empty").rmdir()
    (tmp_path / "ok" / "a" / "zero.png").write_bytes(b"")
    (tmp_path / "ok" / "b" / "broken.png").write_bytes((tmp_path / "ok" / "b" / "0.png").read_bytes()[:60])
    with pytest.raises(DataError, match="2 unreadable image") as info:
        data.load(str(tmp_path / "ok"))
    assert "zero.png" in str(info.value) and "broken.png" in str(info.value) and "--skip-bad-images" in str(info.value)
    loaded = data.load(data.Source(str(tmp_path / "ok"), skip_bad_images=True))
    assert loaded.info.skipped == 2 and loaded.info.images["train"] + loaded.info.images["test"] == 10
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        data.load(str(tmp_path / "none"))
    write_folder(tmp_path / "split" / "train", ["a", "b"], 3)
    write_folder(tmp_path / "split" / "test", ["a", "c"], 1)
    with pytest.raises(DataError, match=r"train/ has classes \['a', 'b'\] but test/ has \['a', 'c'\]"):
        data.load(str(tmp_path / "split"))


def test_stratified_indices_hits_exact_size(seed):
    labels = np.repeat(np.arange(10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    for size in (1, 7, 999, 6000):
        idx = data.stratified_indices(labels, size, seed)
        assert len(idx) == size == len(set(idx.tolist()))


def test_a_folder_is_read_into_one_array_holding_the_images_once(tmp_path):
    import tracemalloc

    from mnist_opt import readers

    write_folder(tmp_path, ["a", "b"], 150, size=(64, 48))
    tracemalloc.start()
    raw = readers.read_folder(tmp_path, None, False, lambda line: None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert raw.x_train.shape == (300, 48, 64, 3)
    assert peak < 1.3 * raw.x_train.nbytes, (peak, raw.x_train.nbytes)  # one copy, and one image being decoded


# What MNIST's split was before other data was taken (commit 6cedd1f): the same images in the same places.
MNIST_VAL_INDEX_SHA256 = "bb2334a0b027dfd0e759bfa2c59c4c2b6f3ec045ebe31d12b3f9182a90b28d77"  # seed 0
MNIST_X_TRAIN_SHA256 = "fed3cf6cce03d77179649efc8ecbd32cb6a27710973e7c54b176f3c368133fae"


def test_mnist_s_split_is_what_it_was_before_other_data():
    import hashlib

    split = data.load_split(0)
    assert hashlib.sha256(split.val_index.astype(np.int64).tobytes()).hexdigest() == MNIST_VAL_INDEX_SHA256
    assert hashlib.sha256(np.ascontiguousarray(split.x_train).tobytes()).hexdigest() == MNIST_X_TRAIN_SHA256


def test_splitting_a_folder_holds_its_images_once(tmp_path):
    import tracemalloc

    write_folder(tmp_path, ["a", "b"], 150, size=(64, 48))  # no test split: one is held out, then validation
    tracemalloc.start()
    split = data.load_split(0, str(tmp_path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    images = split.x_train.nbytes + split.x_val.nbytes + 45 * 48 * 64 * 3
    assert split.info.images == {"train": 255, "test": 45}
    assert peak < 1.3 * images, (peak, images)  # reordered in place, not copied


def test_data_that_changed_since_a_run_was_tuned_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", **_base())
    info = data.load(str(tmp_path / "d.npz")).info
    data.check_recorded(info, info.content_sha256, "runs/x")  # the same data: fine
    data.check_recorded(info, None, "runs/x")  # a run that recorded none
    with pytest.raises(DataError, match="not the data runs/x was tuned on"):
        data.check_recorded(info, "0" * 64, "runs/x")


@pytest.mark.parametrize("case, expected", [
    ("all_bad", "no readable images"),
    ("class_lost", "every image in a was unreadable"),
    ("too_big", "images are 120x100"),
])
def test_folders_with_nothing_left_or_too_large_are_refused_before_decoding(tmp_path, case, expected):
    write_folder(tmp_path, ["a", "b"], 3, size=(100, 120) if case == "too_big" else (16, 12))
    if case != "too_big":
        for path in (tmp_path / "a").iterdir():
            path.write_bytes(b"")
    if case == "all_bad":
        for path in (tmp_path / "b").iterdir():
            path.write_bytes(b"")
    with pytest.raises(DataError, match=expected):
        data.load(data.Source(str(tmp_path), skip_bad_images=True))


def test_a_grey_palette_image_is_grey_and_a_damaged_gzip_is_named(tmp_path):
    from mnist_opt import readers

    for i in range(4):
        (tmp_path / "f" / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).convert("P").save(tmp_path / "f" / str(i % 2) / f"{i}.png")
    assert data.load(str(tmp_path / "f")).info.shape == (10, 10, 1)
    (tmp_path / "idx").mkdir()
    good = gzip.compress(b"\x00\x00\x08\x03" + bytes(4 * 3) + bytes(100))
    (tmp_path / "idx" / "train-images-idx3-ubyte.gz").write_bytes(good[:10] + bytes(len(good) - 18) + good[-8:])
    with pytest.raises(DataError, match="cannot be read"):
        readers.read_idx_file(tmp_path / "idx" / "train-images-idx3-ubyte.gz", 3)
