"""Importing TensorFlow quietly: a person should see the tool's lines, not TF's start-up noise."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings


def quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ and absl start-up messages hidden.

    Some of them ("Could not find cuda drivers") are written to file
    descriptor 2 before any log level applies, so stderr is captured during
    the import and shown only if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", module="keras_tuner")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
