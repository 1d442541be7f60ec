"""Issue 32's image folders: the decoded-image cache compared file by file (a touched file is
not decoded again, a changed one is the only one decoded), bounded with least-recently-used
eviction, written atomically, shown and cleared by `layerloom --cache`; image sizes checked
from the headers before anything is decoded; progress while headers are read and images
decoded. Decodes are counted, not timed."""
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from layerloom.core.errors import DataError
from layerloom.data import image_cache, imagefolder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAYERLOOM_CACHE_LIMIT", raising=False)
    return tmp_path / "cache" / "images"


@pytest.fixture
def decodes(monkeypatch):
    """The paths imagefolder decodes, in order."""
    seen = []
    real = imagefolder._decode_bytes

    def counted(path, data, size, color, place):
        seen.append(os.path.basename(path))
        return real(path, data, size, color, place)
    monkeypatch.setattr(imagefolder, "_decode_bytes", counted)
    return seen


def make_folder(root, n=6, classes=("a", "b"), size=(9, 7), seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(
                root / c / f"{i:02d}.png")
    return root


def reference(root, size=(8, 8), color="rgb"):
    """Each image as Pillow decodes it on its own, in the folder's order, as float64."""
    rows = []
    for c in sorted(os.listdir(root)):
        for f in sorted(os.listdir(root / c)):
            with Image.open(root / c / f) as im:
                im = im.convert("RGB" if color == "rgb" else "L").resize(
                    (size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im, np.float64)
            rows.append(a if a.ndim == 3 else a[..., None])
    return np.stack(rows)


def load(root, size=(8, 8), color="rgb", progress=None):
    splits, _ = imagefolder.load(str(root), list(size), color, progress=progress)
    return splits["train"][0]


def files(cache, ending):
    return sorted(f for f in os.listdir(cache) if f.endswith(ending)) if cache.exists() else []


def test_a_touched_file_is_not_decoded_again_and_a_changed_one_alone_is(tmp_path, decodes,
                                                                        private_cache):
    root = make_folder(tmp_path / "imgs")
    x = load(root)
    assert len(decodes) == 12
    np.testing.assert_array_equal(x[:], reference(root))
    decodes.clear()
    assert np.array_equal(load(root)[:], x[:]) and decodes == []  # reused as it is

    later = time.time() + 5
    os.utime(root / "a" / "03.png", (later, later))  # `touch`: the same bytes
    assert np.array_equal(load(root)[:], x[:]) and decodes == []
    index = image_cache.read(image_cache.key_of(str(root), (8, 8), "rgb")).files
    assert index.mtimes[3] == os.stat(root / "a" / "03.png").st_mtime_ns  # its new time

    Image.fromarray(np.full((9, 7, 3), 200, np.uint8)).save(root / "b" / "02.png")
    y = load(root)
    assert decodes == ["02.png"]
    np.testing.assert_array_equal(y[:], reference(root))
    assert np.abs(y[:] - x[:]).sum(axis=(1, 2, 3)).nonzero()[0].tolist() == [8]
    assert len(files(private_cache, ".npy")) == 1 and len(files(private_cache, ".npz")) == 1

    decodes.clear()  # a new file: itself; a copy of an image already cached: nothing
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(root / "a" / "99.png")
    (root / "b" / "50.png").write_bytes((root / "a" / "01.png").read_bytes())
    np.testing.assert_array_equal(load(root)[:], reference(root))
    assert decodes == ["99.png"]
    decodes.clear()
    for name in ("a/00.png", "b/50.png"):  # removed (the first, the last): the others kept
        os.unlink(root / name)
        np.testing.assert_array_equal(load(root)[:], reference(root))
    assert decodes == []


def test_another_size_or_color_is_another_entry(tmp_path, decodes, private_cache):
    root = make_folder(tmp_path / "imgs", n=2)
    load(root)
    g = load(root, (5, 6), "grayscale")
    np.testing.assert_array_equal(g[:], reference(root, (5, 6), "grayscale"))
    assert len(decodes) == 8 and len(files(private_cache, ".npy")) == 2


def _age(cache, key, seconds):
    t = time.time() - seconds
    os.utime(cache / f"{key}.index.npz", (t, t))


def test_least_recently_used_entries_are_evicted_under_the_limit(tmp_path, decodes,
                                                               private_cache, monkeypatch):
    roots = [make_folder(tmp_path / name, n=5, seed=k) for k, name in enumerate("ABC")]
    keys = [image_cache.key_of(str(r), (8, 8), "rgb") for r in roots]
    load(roots[0])
    load(roots[1])
    entry = sum(os.path.getsize(private_cache / f) for f in os.listdir(private_cache)) / 2
    _age(private_cache, keys[0], 100)
    _age(private_cache, keys[1], 50)
    load(roots[0])  # A used again: B is now the least recently used
    # leftovers: an array of the cache's first format and an old unfinished write go; a
    # write in progress (a young .part) and a file not of the cache's naming stay
    old = time.time() - 2 * image_cache.GRACE
    for name, t in (("0" * 32 + ".npy", old), ("1" * 32 + ".1234abcd.npy.part", old),
                    ("2" * 32 + ".5678abcd.npy.part", None), ("notes.txt", old)):
        (private_cache / name).write_bytes(b"x" * 100)
        if t:
            os.utime(private_cache / name, (t, t))
    monkeypatch.setenv("LAYERLOOM_CACHE_LIMIT", str(int(2.5 * entry)))
    decodes.clear()
    load(roots[2])
    assert len(decodes) == 10
    left = sorted(os.listdir(private_cache))
    assert [k for k in keys if f"{k}.index.npz" in left] == [keys[0], keys[2]]
    assert "notes.txt" in left and "2" * 32 + ".5678abcd.npy.part" in left
    assert "0" * 32 + ".npy" not in left and "1" * 32 + ".1234abcd.npy.part" not in left
    assert len(files(private_cache, ".npy")) == 2
    decodes.clear()
    load(roots[0])
    assert decodes == []  # kept
    load(roots[1])
    assert len(decodes) == 10  # evicted: decoded again


def test_an_entry_larger_than_the_limit_is_kept_while_used(tmp_path, private_cache,
                                                           monkeypatch):
    monkeypatch.setenv("LAYERLOOM_CACHE_LIMIT", "0")
    root = make_folder(tmp_path / "imgs", n=2)
    np.testing.assert_array_equal(load(root)[:], reference(root))
    assert len(files(private_cache, ".npy")) == 1


@pytest.mark.parametrize("text, value", [("", 2 << 30), ("2G", 2 << 30), ("500M", 500 << 20),
                                         ("1.5GiB", 3 << 29), ("64kb", 64 << 10), ("123", 123)])
def test_the_limit_setting(monkeypatch, text, value):
    monkeypatch.setenv("LAYERLOOM_CACHE_LIMIT", text)
    assert image_cache.limit() == value


def test_a_bad_limit_is_said(monkeypatch):
    monkeypatch.setenv("LAYERLOOM_CACHE_LIMIT", "lots")
    with pytest.raises(DataError, match=r"LAYERLOOM_CACHE_LIMIT: expected a size such as 2G, "
                                        r"500M or a number of bytes, got 'lots'"):
        image_cache.limit()


def test_a_failed_or_interrupted_decoding_writes_nothing_and_keeps_the_entry(
        tmp_path, private_cache, monkeypatch):
    root = make_folder(tmp_path / "imgs", n=4)
    x = load(root)[:]
    before = sorted(os.listdir(private_cache))
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(root / "a" / "10.png")
    Image.fromarray(np.ones((9, 7, 3), np.uint8)).save(root / "b" / "10.png")
    real = imagefolder._decode_bytes
    calls = []

    def interrupted(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a)
    monkeypatch.setattr(imagefolder, "_decode_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load(root)
    assert sorted(os.listdir(private_cache)) == before  # no .part, the entry as it was
    monkeypatch.setattr(imagefolder, "_decode_bytes", real)
    (root / "b" / "10.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # header only
    with pytest.raises(DataError, match=r"b.10\.png: not a readable image"):
        load(root)
    assert sorted(os.listdir(private_cache)) == before
    os.unlink(root / "a" / "10.png")
    os.unlink(root / "b" / "10.png")
    np.testing.assert_array_equal(load(root)[:], x)


def test_a_damaged_index_or_array_is_a_miss(tmp_path, decodes, private_cache):
    root = make_folder(tmp_path / "imgs", n=2)
    load(root)
    index = private_cache / files(private_cache, ".npz")[0]
    with np.load(index) as z:
        good = dict(z)
    short = dict(good, sizes=good["sizes"][:3])  # arrays of different lengths
    wrong = dict(good, meta=np.frombuffer(json.dumps(dict(
        json.loads(good["meta"].tobytes()), shape=[5, 8, 8, 3])).encode(), np.uint8))
    for damaged in (b"not a zip", index.read_bytes()[:-30], short, wrong):
        if isinstance(damaged, bytes):
            index.write_bytes(damaged)
        else:
            np.savez(index, **damaged)
        np.testing.assert_array_equal(load(root)[:], reference(root))
    assert len(decodes) == 20
    data = private_cache / files(private_cache, ".npy")[0]
    data.write_bytes(data.read_bytes()[:-10])  # cut short
    np.testing.assert_array_equal(load(root)[:], reference(root))
    assert len(decodes) == 24 and len(files(private_cache, ".npy")) == 1


# -- layerloom --cache ------------------------------------------------------------------------
def test_cache_info_and_clear(tmp_path, private_cache, capsys):
    from layerloom.cli.main import main
    root = make_folder(tmp_path / "imgs", n=3)
    load(root)
    load(root, (4, 4), "grayscale")
    (private_cache / "mine.txt").write_text("not the cache's")
    assert main(["--cache", "info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Data cache: {private_cache}"
    assert out[1].startswith("2 folder(s), ") and "of a 2.0 GB limit" in out[1]
    assert sum("6 images 8x8x3" in line and str(root) in line for line in out) == 1
    assert sum("6 images 4x4x1" in line and str(root) in line for line in out) == 1
    assert main(["--cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("Removed 2 folder(s), 4 file(s), ")
    assert os.listdir(private_cache) == ["mine.txt"]
    main(["--cache", "info"])
    assert capsys.readouterr().out.splitlines()[1].startswith("0 folder(s), 0 bytes of a ")


def test_cache_command_line(tmp_path, private_cache):
    root = make_folder(tmp_path / "imgs", n=2)
    load(root)
    env = dict(os.environ, LAYERLOOM_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "layerloom.cli", "--cache"]
    r = subprocess.run(cmd + ["clear"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("Removed 1 folder(s), 2 file(s)")
    assert os.listdir(private_cache) == []
    env["LAYERLOOM_CACHE_LIMIT"] = "ten"
    r = subprocess.run(cmd + ["info"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == ("layerloom: error: LAYERLOOM_CACHE_LIMIT: expected a size such as 2G, "
                        "500M or a number of bytes, got 'ten'\n")


# -- sizes from the headers -------------------------------------------------------------------
def png_claiming(path, width, height):
    """A small real PNG whose header (IHDR, its CRC mended) says width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))


def gif_claiming(path, width, height):
    buf = io.BytesIO()
    Image.new("P", (4, 4)).save(buf, "GIF")
    b = bytearray(buf.getvalue())
    b[6:10] = struct.pack("<HH", width, height)  # the logical screen Pillow takes as the size
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("maker, name, w, h, message", [
    (png_claiming, "zz.png", 20000, 20000, r"zz\.png: refused: 20000x20000 pixels, more than "
                                           r"the 40 megapixels an image may have here"),
    (png_claiming, "zz.png", 8000, 6000, r"zz\.png: refused: 8000x6000 pixels, more than the "
                                         r"40 megapixels"),
    (gif_claiming, "zz.gif", 20000, 20000, r"zz\.gif: refused: 400,000,000 pixels, more than "
                                           r"the 40 megapixels an image may have here$"),
    (gif_claiming, "zz.gif", 9000, 5000, r"zz\.gif: refused: 9000x5000 pixels, more than"),
])
def test_a_huge_image_is_refused_from_its_header_before_any_decoding(
        tmp_path, decodes, private_cache, maker, name, w, h, message):
    root = make_folder(tmp_path / "imgs", n=30)
    maker(root / "b" / name, w, h)  # sorted last: every other image would be decoded first
    with pytest.raises(DataError, match=message) as e:
        load(root)
    assert "bomb" not in str(e.value).lower()
    assert decodes == [] and files(private_cache, ".npy") == []


def test_a_huge_image_given_alone_is_refused_too(tmp_path):
    png_claiming(tmp_path / "big.png", 20000, 20000)
    with pytest.raises(DataError, match=r"big\.png: refused: 20000x20000 pixels"):
        imagefolder.decode(str(tmp_path / "big.png"), (8, 8), "rgb", "input")
    gif_claiming(tmp_path / "big.gif", 20000, 20000)
    with pytest.raises(DataError, match=r"big\.gif: refused: 400,000,000 pixels"):
        imagefolder.decode(str(tmp_path / "big.gif"), (8, 8), "rgb", "input")


# -- progress ---------------------------------------------------------------------------------
def test_progress_while_headers_are_read_and_images_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder, "PROGRESS_EVERY", 0)
    root = make_folder(tmp_path / "imgs", n=5)
    calls = []
    load(root, progress=lambda *a: calls.append(a))
    label = str(root)
    listed = [(label, n, 0, "listed") for n in range(11)] + [(label, 10, 10, "listed")]
    files_ = [c for c in calls if c[3] == "files"]
    images = [c for c in calls if c[3] == "images"]
    assert calls == listed + files_ + images  # the folder listed, every header, the images
    assert [c[1] for c in files_] == list(range(11)) and [c[1] for c in images] == \
        list(range(11))
    assert all(c[0] == label and c[2] == 10 for c in files_ + images)
    calls.clear()
    load(root, progress=lambda *a: calls.append(a))
    assert calls == listed  # all cached: nothing else to show
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(root / "a" / "01.png")
    calls.clear()
    load(root, progress=lambda *a: calls.append(a))
    assert calls == listed + [(label, 0, 1, "files"), (label, 1, 1, "files"),
                              (label, 0, 1, "images"), (label, 1, 1, "images")]


def test_progress_is_throttled_and_names_the_split(tmp_path):
    make_folder(tmp_path / "f" / "train", n=40)
    make_folder(tmp_path / "f" / "test", n=3)
    calls = []
    imagefolder.load(str(tmp_path / "f"), [8, 8], progress=lambda *a: calls.append(a))
    labels = {c[0] for c in calls if c[3] != "listed"}
    assert labels == {f"{tmp_path / 'f'} (train)", f"{tmp_path / 'f'} (test)"}
    assert calls[0] == (str(tmp_path / "f"), 0, 0, "listed")
    assert (str(tmp_path / "f"), 86, 86, "listed") in calls
    train = [c for c in calls if c[0].endswith("(train)") and c[3] == "images"]
    assert train[0][1:3] == (0, 80) and train[-1][1:3] == (80, 80)
    assert len(train) < 80  # not one call per image


def test_the_images_source_passes_progress_on(tmp_path):
    from layerloom.data import sources
    root = make_folder(tmp_path / "imgs", n=2)

    class P:
        dataset = {"source": "images", "path": str(root), "size": [8, 8]}

        def resolve(self, p):
            return p
    calls = []
    sources.get("images").load(P.dataset, P(), progress=lambda *a: calls.append(a))
    assert calls[0] == (str(root), 0, 0, "listed") and (str(root), 0, 4, "files") in calls
    assert calls[-1] == (str(root), 4, 4, "images")


class Clock:
    def __init__(self):
        self.t = 100.0

    def perf_counter(self):
        return self.t


@pytest.fixture
def shown(monkeypatch):
    """(the clock the progress display reads, its show(), what it wrote so far)."""
    from layerloom.cli import run
    clock = Clock()
    monkeypatch.setattr(run, "time", clock)
    out = io.StringIO()
    return clock, run.data_progress(out), out.getvalue


def test_cli_shows_listing_checking_and_decoding_with_rate_and_time_left(shown):
    clock, show, text = shown
    show("/data/imgs", 0, 0, "listed")  # the number of files not known yet
    clock.t += 0.5
    show("/data/imgs", 10000, 0, "listed")  # not shown in the first second
    clock.t += 1
    show("/data/imgs", 15000, 0, "listed")
    clock.t += 0.5
    show("/data/imgs", 20000, 20000, "listed")
    show("/data/imgs", 0, 20000, "files")
    clock.t += 1
    show("/data/imgs", 20000, 20000, "files")
    show("/data/imgs", 0, 20000, "images")
    clock.t += 2
    show("/data/imgs", 5000, 20000, "images")
    clock.t += 0.5
    show("/data/imgs", 5500, 20000, "images")  # not 10% further: no line when not a terminal
    clock.t += 5.5
    show("/data/imgs", 20000, 20000, "images")
    assert text().splitlines() == [
        "Listing imgs: 15,000 files, 10,000 files/s",
        "Listing imgs: 100% (20,000 of 20,000 files), 10,000 files/s, 2.0 s",
        "Checking imgs: 0% (0 of 20,000 files)",
        "Checking imgs: 100% (20,000 of 20,000 files), 20,000 files/s, 1.0 s",
        "Decoding imgs: 0% (0 of 20,000 images)",
        "Decoding imgs: 25% (5,000 of 20,000 images), 2,500 images/s, 6 s left",
        "Decoding imgs: 100% (20,000 of 20,000 images), 2,500 images/s, 8.0 s"]


def test_cli_shows_a_small_folder_only_once_it_takes_a_second(shown):
    clock, show, text = shown
    show("/data/few", 0, 300, "images")
    clock.t += 0.5
    show("/data/few", 100, 300, "images")
    assert text() == ""
    clock.t += 1
    show("/data/few", 200, 300, "images")
    assert text() == "Decoding few: 67% (200 of 300 images), 133 images/s, 1 s left\n"


def test_a_cache_that_cannot_be_written_is_said(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", n=2)
    (tmp_path / "file").write_text("a file where the cache's folder would be")
    monkeypatch.setenv("LAYERLOOM_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(DataError, match=r"LAYERLOOM_CACHE_DIR: cannot write the image cache in "
                                        r".*file.images \(.*; 768 bytes needed\): free space "
                                        r"there or set LAYERLOOM_CACHE_DIR to another folder"):
        load(root)


def test_a_full_disk_is_said_before_anything_is_decoded(tmp_path, decodes, monkeypatch,
                                                        private_cache):
    root = make_folder(tmp_path / "imgs", n=2)

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(DataError, match=r"\(No space left on device; 768 bytes needed\)"):
        load(root)
    assert decodes == [] and os.listdir(private_cache) == []


def test_images_given_to_predict_are_checked_before_any_is_decoded(tmp_path, decodes):
    from layerloom.data import inputs
    from layerloom.project import loom as projectfile
    examples = os.path.join(os.path.dirname(__file__), "..", "assets", "examples")
    project = projectfile.load(os.path.join(examples, "shapes_folder.loom"))
    make_folder(tmp_path / "in", n=5, classes=("x",))
    png_claiming(tmp_path / "in" / "x" / "zz.png", 20000, 20000)
    with pytest.raises(DataError, match=r"zz\.png: refused: 20000x20000 pixels"):
        inputs.read(project, str(tmp_path / "in" / "x"))
    assert decodes == []
    os.unlink(tmp_path / "in" / "x" / "zz.png")
    assert inputs.read(project, str(tmp_path / "in" / "x")).arrays["x"].shape == (5, 28, 28, 1)
