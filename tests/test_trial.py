
import numpy as np

from mnist_opt.tuning import train, trial
from mnist_opt.tuning.config import TuneConfig


def test_trial_epochs_draw_on_through_the_whole_train_split(seed):
    # Each image carries its own index in two pixels, so every batch says which images it holds.
    n = 2000
    x = np.zeros((n, 28, 28), "uint8")
    x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    y = np.arange(n) % 10
    ds, steps = trial.trial_data((x, y), TuneConfig(train_subset=400, trial_batch_size=100, batch_size=7), {}, seed)
    assert steps == 4
    epochs = []
    for images, _ in ds.take(6 * steps).batch(steps):  # one element per trial epoch
        pixels = np.rint(images.numpy().reshape(-1, 28, 28)[:, 0, :2] * 255).astype(int)
        epochs.append(set(pixels[:, 0] + 256 * pixels[:, 1]))
    assert all(len(e) == 400 for e in epochs)
    # The first five epochs are one pass: every image once, none twice; the sixth starts a new pass.
    assert set().union(*epochs[:5]) == set(range(n))
    assert epochs[5] != epochs[0]


def test_trial_epochs_are_whole_calls_into_tensorflow():
    # Keras runs whole calls of steps_per_execution batches on an endless stream: an epoch asked
    # for 5 batches would train 8 and report 8, so the epoch is 8 to begin with.
    x, y = np.zeros((2000, 28, 28), "uint8"), np.zeros(2000, "int64")
    _, steps = trial.trial_data((x, y), TuneConfig(train_subset=500, trial_batch_size=100), {}, 0)
    assert steps % train.STEPS_PER_EXECUTION == 0 and steps >= 5
    assert steps - 5 < train.STEPS_PER_EXECUTION
