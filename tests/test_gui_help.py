"""File > Open Example and the Help menu (app/window/window_help.py, engine/gallery.py): the bundled
examples are listed from the installed package, each opens as a copy with its data so the
installed files never change, and Help shows the shortcuts and the version with the devices."""
import hashlib
import os

import pytest

pytest.importorskip("pytestqt")

from layerloom import gallery  # noqa: E402


def _digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_the_gallery_lists_every_bundled_example():
    keys = {e.key for e in gallery.examples()}
    shipped = {n[:-5] for n in os.listdir(gallery.folder()) if n.endswith(".loom")}
    assert keys == shipped and {"spirals", "wine_csv", "fashion_mnist_mlp"} <= keys
    spirals = next(e for e in gallery.examples() if e.key == "spirals")
    assert spirals.title == "Two spirals" and "4 layers" in spirals.summary


def test_the_file_menu_lists_the_examples_by_title(win):
    titles = [a.text() for a in win.examples_menu.actions()]
    assert titles == [e.title for e in gallery.examples()]
    assert all(a.toolTip() for a in win.examples_menu.actions())


def test_an_example_opens_as_a_copy_with_its_data(win, tmp_path, monkeypatch):
    monkeypatch.setattr(type(win), "examples_home", staticmethod(lambda: str(tmp_path)))
    before = _digest(gallery.folder())
    assert win.open_example("wine_csv")
    path = win.doc.path
    assert path == str(tmp_path / "wine_csv" / "wine_csv.loom")
    assert os.path.isfile(tmp_path / "wine_csv" / "data" / "wine.csv")
    win.doc.project.name = "changed"  # edit and save the copy: the gallery stays as it was
    win.save()
    assert _digest(gallery.folder()) == before
    assert win.open_example("wine_csv")  # a second copy, never over the first
    assert win.doc.path == str(tmp_path / "wine_csv-2" / "wine_csv.loom")


def test_help_lists_the_shortcuts_and_the_version(win):
    import layerloom
    text = win.shortcuts_text()
    assert "Run: F5, Ctrl+R" in text and "Undo:" in text and "Open Example" not in text
    about = win.about_text()
    assert f"Layerloom {layerloom.__version__}" in about and "OpenCL devices:" in about
    box = win.show_about()
    assert box.isVisible()
    box.close()


def test_an_examples_card_says_whether_its_data_is_here_or_downloaded(tmp_path, monkeypatch):
    """Issue 19 (the trial): the card said "downloaded on first use" while Debian's
    dataset-fashion-mnist had the files on disk."""
    from layerloom.data import keras_sets
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("LAYERLOOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setitem(keras_sets.DATASETS["fashion_mnist"], "system", ())

    def summary():
        return next(e for e in gallery.examples() if e.key == "fashion_mnist_mlp").summary
    assert "fashion_mnist (downloaded on first use, about 30 MB)" in summary()
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in keras_sets.IDX_FILES[:3]:
        (folder / (name + ".gz")).write_bytes(b"")
    assert "downloaded on first use" in summary()  # not all four files
    (folder / (keras_sets.IDX_FILES[3] + ".gz")).write_bytes(b"")
    assert "fashion_mnist (on disk)" in summary()
    assert keras_sets.local_folder("fashion_mnist") == str(folder)
