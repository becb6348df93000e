import pytest
from typer.testing import CliRunner

from mnist_opt.cli import app
from mnist_opt.errors import InputError
from mnist_opt.inference.model import Model


@pytest.mark.parametrize("name, content, expected", [
    ("model.onnx", b"x", "expected a .keras or .tflite file"),
    ("missing.tflite", None, "no such file"),
    ("junk.tflite", b"not a flatbuffer", "cannot be loaded"),
    ("junk.keras", b"not a zip", "cannot be loaded"),
])
def test_bad_model_files(seed, tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        Model(path)
    result = CliRunner().invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 2 and expected in result.output
