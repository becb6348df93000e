import numpy as np
import pytest

from mnist_opt.errors import DataError
from mnist_opt import data


def test_bundled_copy_is_mnist(seed):
    arrays, path, digest = data.load_arrays()
    assert path == data.BUNDLED
    assert digest == data.CONTENT_SHA256
    assert arrays["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(arrays["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_split_is_stratified_seeded_and_never_touches_test(seed):
    s = data.load_split(seed)
    assert len(s.y_train) == 54000 and len(s.y_val) == 6000
    assert not set(s.train_index) & set(s.val_index)
    assert sorted(np.concatenate([s.train_index, s.val_index]).tolist()) == list(range(60000))
    arrays, _, _ = data.load_arrays()
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


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such file"),
    ("truncated", "cannot be read as .npz"),
    ("not_npz", "cannot be read as .npz"),
    ("no_arrays", "missing arrays"),
    ("wrong_shape", "x_train has shape (100, 28, 28)"),
    ("wrong_hash", "does not match MNIST"),
])
def test_bad_files_are_named_with_what_was_expected(seed, tmp_path, case, expected):
    path = tmp_path / "mnist.npz"
    arrays, _, _ = data.load_arrays()
    if case == "truncated":
        path.write_bytes(data.BUNDLED.read_bytes()[:100_000])
    elif case == "not_npz":
        path.write_text("hello")
    elif case == "no_arrays":
        _write(path, x=np.zeros(3))
    elif case == "wrong_shape":
        _write(path, **dict(arrays, x_train=arrays["x_train"][:100]))
    elif case == "wrong_hash":
        flipped = arrays["y_train"].copy()
        flipped[0] = (flipped[0] + 1) % 10
        _write(path, **dict(arrays, y_train=flipped))
    with pytest.raises(DataError) as info:
        data.load_arrays(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_stratified_indices_hits_exact_size(seed):
    labels = np.repeat(np.arange(10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    for size in (1, 7, 999, 6000):
        idx = data.stratified_indices(labels, size, seed)
        assert len(idx) == size == len(set(idx.tolist()))
