"""The README's "Using a trained model" section runs as written: its shell commands (in a
scratch copy of the repository's examples) and its Python block."""
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _section():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index("## Using a trained model")
    return text[start:text.index("\n## ", start + 1)]


def test_the_readme_commands_and_python_run_as_written(tmp_path):
    section = _section()
    shell, python = re.findall(r"```\n(.*?)```", section, re.S)[0], \
        re.findall(r"```python\n(.*?)```", section, re.S)[0]
    shutil.copytree(os.path.join(ROOT, "assets"), tmp_path / "assets")
    for line in shell.splitlines():
        args = shlex.split(line.split("#")[0])
        assert args[0] == "layerloom"
        r = subprocess.run([sys.executable, "-m", "layerloom.app", *args[1:]] +
                           (["--epochs", "5"] if "--run" in args else []),
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (line, r.stderr)
    assert (tmp_path / "predictions.csv").exists() and (tmp_path / "scores.json").exists()
    r = subprocess.run([sys.executable, "-c", python.replace("epochs=5", "epochs=1")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "'accuracy'" in r.stdout and "Total params" in r.stdout
    assert (tmp_path / "runs" / "wine" / "more.loom.weights.npz").exists()
