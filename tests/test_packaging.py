"""The wheel a user installs: one top-level import name, and the data files the code reads."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
SKIP = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


def test_the_wheel_adds_mnist_opt_alone_with_its_data(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mnist_opt-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert z.read(top_level).decode().split() == ["mnist_opt"]
        record = z.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    tops = {line.split(",")[0].split("/")[0] for line in record.splitlines() if line}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mnist_opt"}
    for needed in ("mnist_opt/assets/mnist.npz", "mnist_opt/assets/devices.toml",
                   "mnist_opt/inference/assets/draw.html", "mnist_opt/search_spaces/default.toml",
                   "mnist_opt/search_spaces/frontier.toml", "mnist_opt/tuning/tune.py", "mnist_opt/export/micro.py",
                   "mnist_opt/reports/report.py"):
        assert needed in names, needed
