"""Saved files and folders get the modes an ordinary write gives (issue 31, item 7): a run's
folder, written as one unit through a temporary folder, was mkdtemp's 0700."""
import os

from layerloom.core.fileio import atomic_write_text, write_folder_unit


def test_a_folder_written_as_a_unit_gets_the_ordinary_modes(tmp_path):
    old = os.umask(0o022)
    try:
        write_folder_unit(str(tmp_path / "run"), {"history.json": b"{}"})
        assert (os.stat(tmp_path / "run").st_mode & 0o777) == 0o755
        assert (os.stat(tmp_path / "run" / "history.json").st_mode & 0o777) == 0o644
        atomic_write_text(str(tmp_path / "p.loom"), "{}")
        assert (os.stat(tmp_path / "p.loom").st_mode & 0o777) == 0o644
        os.chmod(tmp_path / "run", 0o750)  # a folder's own mode is kept when it is rewritten
        write_folder_unit(str(tmp_path / "run"), {"weights.npz": b"1"})
        assert (os.stat(tmp_path / "run").st_mode & 0o777) == 0o750
        assert sorted(os.listdir(tmp_path / "run")) == ["history.json", "weights.npz"]
    finally:
        os.umask(old)
