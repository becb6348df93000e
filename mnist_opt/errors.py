"""The project's own error types.

Library code raises these; only the CLI turns them into a message and an exit
code: 2 for input the user can fix, 1 for a failure while running.
"""


class MnistOptError(Exception):
    """Base class: a failure while running (exit code 1)."""

    exit_code = 1


class InputError(MnistOptError):
    """Bad input from the user: a flag, a file, a run directory (exit code 2)."""

    exit_code = 2


class SearchSpaceError(InputError):
    """A search-space file that does not parse or does not validate."""


class DataError(InputError):
    """Data that is missing, unreadable or malformed (`--data`, `--image-size`), or not what a run was tuned on."""


class RunDirError(InputError):
    """A run directory that cannot be used for what was asked."""


class SearchFailed(MnistOptError):
    """A search in which no trial completed."""


class BridgeMismatch(MnistOptError):
    """The tf_keras rebuild of a model does not predict what the original does."""


class MicroUnsupported(MnistOptError):
    """A .tflite file TensorFlow Lite Micro cannot run: missing ops (named in `ops`), or one it cannot prepare."""

    def __init__(self, message: str, ops: list[str]):
        super().__init__(message)
        self.ops = ops


class WorkaroundUnavailable(MnistOptError):
    """An installed library no longer fits a workaround that has no safe fallback (mnist_opt/workarounds.py):
    the message names the workaround, the package, its version and range, what differs, and what to install."""
