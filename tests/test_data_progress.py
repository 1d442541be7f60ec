"""Issue 32 item 3: a data read's progress and its cancellation. The words the CLI, the Data
tab and the training status show (what is read, percent, rate, time left); progress events in
order; a cancel flag checked in the readers' progress calls raises Cancelled and leaves no
file (the image cache's temporary included); Stop during a training run's data preparation
ends it with "stopped, nothing written"; Ctrl-C while `layerloom --run` reads a CSV stops at
once with one line and exit 130."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from layerloom.data import imagefolder, tabular
from layerloom.data.cancel import Cancelled, cancellable
from layerloom.data.progress_words import ProgressWords

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")
HEADER = ("alcohol,malic_acid,ash,alcalinity_of_ash,magnesium,total_phenols,flavanoids,"
          "nonflavanoid_phenols,proanthocyanins,color_intensity,hue,od280_od315,proline,"
          "cultivar")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLOOM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "images"


def wine_like(path, rows, seed=0):
    """A CSV shaped as the wine example's (13 numbers, a text label of 3 values)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 13))
    labels = rng.integers(0, 3, rows)
    with open(path, "w") as f:
        f.write(HEADER + "\n")
        for s in range(0, rows, 10_000):
            f.write("".join(",".join(f"{v:.4f}" for v in row) + f",cultivar_{k + 1}\n"
                            for row, k in zip(x[s:s + 10_000], labels[s:s + 10_000])))
    return str(path)


def wine_project(tmp_path, csv_path, epochs=1):
    with open(os.path.join(EXAMPLES, "wine_csv.loom"), encoding="utf-8") as f:
        d = json.load(f)
    d["dataset"]["path"] = csv_path
    d["training"]["epochs"] = epochs
    path = tmp_path / "p.loom"
    path.write_text(json.dumps(d))
    return str(path), d


def image_folder(root, n=12):
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (9, 7, 3), np.uint8)).save(
                root / c / f"{i:02d}.png")
    return str(root)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_words_say_what_how_far_how_fast_and_how_long():
    clock = Clock()
    w = ProgressWords(clock)
    mb = 2 ** 20
    assert w.line("/d/big.csv", 2 * mb, 80 * mb) == "Reading big.csv: 2% (2 of 80 MB)"
    clock.now += 2.0  # 30 MB more in 2 s: 15 MB/s, 48 MB left: 3.2 s
    assert w.line("/d/big.csv", 32 * mb, 80 * mb) == \
        "Reading big.csv: 40% (32 of 80 MB), 15.0 MB/s, 3 s left"
    clock.now += 3.2
    assert w.line("/d/big.csv", 80 * mb, 80 * mb) == \
        "Reading big.csv: 100% (80 of 80 MB), 15.0 MB/s, 5.2 s"
    # an image folder: its own steps, each timed from its start
    assert w.line("/d/faces/", 0, 0, "listed") == "Listing faces: 0 files"
    assert w.line("/d/faces", 0, 20_000, "images") == "Decoding faces: 0% (0 of 20,000 images)"
    clock.now += 0.4  # too soon for a rate
    assert w.line("/d/faces", 2_000, 20_000, "images") == \
        "Decoding faces: 10% (2,000 of 20,000 images)"
    clock.now += 0.6  # 5,000 in 1 s; 15,000 left
    assert w.line("/d/faces", 5_000, 20_000, "images") == \
        "Decoding faces: 25% (5,000 of 20,000 images), 5,000 images/s, 3 s left"
    assert w.line("https://x.org/a.csv", 1, 2).startswith("Downloading a.csv: 50%")


def test_csv_progress_events_in_order_to_the_whole_file(tmp_path):
    path = wine_like(tmp_path / "d.csv", 40_000)
    size = os.path.getsize(path)
    events = []
    t = tabular.read(path, progress=lambda *a: events.append(a))
    assert len(t) == 40_000
    done = [e[1] for e in events]
    assert len(events) >= size // tabular.BLOCK_BYTES  # one a block at least
    assert done == sorted(done) and done[-1] == size
    assert all(e[0] == path and e[2] == size for e in events)


def test_image_progress_lists_then_checks_then_decodes(tmp_path):
    folder = image_folder(tmp_path / "imgs")
    events = []
    imagefolder.load(folder, (8, 8), "rgb", progress=lambda *a: events.append(a))
    units = [e[3] for e in events]
    order = [u for k, u in enumerate(units) if k == 0 or units[k - 1] != u]
    assert order == ["listed", "files", "images"]
    images = [e for e in events if e[3] == "images"]
    assert images[0][1] == 0 and images[-1][1:3] == (24, 24)


def test_a_cancelled_csv_read_raises_at_the_next_block(tmp_path):
    path = wine_like(tmp_path / "d.csv", 40_000)
    flag, seen = threading.Event(), []

    def progress(p, done, total, unit="bytes"):
        seen.append(done)
        flag.set()  # cancelled after the first block
    with pytest.raises(Cancelled):
        tabular.read(path, progress=cancellable(progress, flag.is_set))
    assert seen == [tabular.BLOCK_BYTES]
    assert sorted(os.listdir(tmp_path)) == ["d.csv"]


@pytest.mark.parametrize("at", ["listed", "files", "images"])
def test_a_cancelled_image_read_leaves_no_cache_file(tmp_path, private_cache, at):
    folder = image_folder(tmp_path / "imgs")
    flag = threading.Event()

    def progress(p, done, total, unit="bytes"):
        if unit == at:  # cancelled at the step's first call: the next one raises
            flag.set()
    with pytest.raises(Cancelled):
        imagefolder.load(folder, (8, 8), "rgb", progress=cancellable(progress, flag.is_set))
    left = os.listdir(private_cache) if private_cache.exists() else []
    assert left == []  # neither a data file, an index nor a .part
    # the next read is whole: the images as they are
    x = imagefolder.load(folder, (8, 8), "rgb")[0]["train"][0]
    assert len(x) == 24


def test_the_data_tab_overview_passes_progress_and_cancel(tmp_path):
    from layerloom.data.overview import overview
    from layerloom.project import loom
    path, d = wine_project(tmp_path, wine_like(tmp_path / "d.csv", 40_000))
    project = loom.from_dict(d, path, strict=False)
    events = []
    info = overview(project, lambda *a: events.append(a))
    assert info["check"] is None and sum(info["sizes"].values()) == 40_000
    assert events[-1][1] == events[-1][2] == os.path.getsize(tmp_path / "d.csv")
    with pytest.raises(Cancelled):
        overview(project, cancellable(None, lambda: True))


def test_stop_during_the_data_preparation_of_a_training_run(tmp_path):
    """The training child (engine/cli/train_process.py) with Stop set while the CSV is read:
    it says so and ends; no weights, no state, no failure."""
    from layerloom.cli import train_process
    path, d = wine_project(tmp_path, wine_like(tmp_path / "d.csv", 40_000))
    stop, pause = threading.Event(), threading.Event()

    class Q(queue.Queue):
        def put(self, item, *a, **k):
            if item[0] == "status" and item[1].startswith("Reading d.csv"):
                stop.set()  # the user presses Stop once the read is under way
            super().put(item, *a, **k)
    q = Q()
    t0 = time.perf_counter()
    train_process.child_main(d, path, 1, None, None, q, stop, pause)
    got = []
    while not q.empty():
        got.append(q.get())
    kinds = [k for k, _ in got]
    assert kinds[-1] == "end" and not {"failed", "weights", "state", "fitted", "done"} & \
        set(kinds), got
    statuses = [v for k, v in got if k == "status"]
    assert statuses[0].startswith("Reading d.csv: ") and statuses[-1] == \
        "Stopped while reading the data; nothing was trained or written."
    assert len(statuses) == 2  # stopped at the next block
    assert time.perf_counter() - t0 < 30


@pytest.mark.slow
def test_ctrl_c_while_the_cli_reads_a_csv_is_one_line_and_exit_130(tmp_path):
    csv_path = wine_like(tmp_path / "big.csv", 300_000)  # ~30 MB: a few seconds to read
    path, _ = wine_project(tmp_path, csv_path)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "layerloom.app", "--run", path, "--out",
                          str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=tmp_path)
    for line in p.stdout:
        if line.startswith("Reading big.csv"):
            break
    else:
        pytest.fail(f"no progress line; stderr: {p.stderr.read()}")
    t = time.perf_counter()
    p.send_signal(signal.SIGINT)
    rest, stderr = p.communicate(timeout=60)
    assert time.perf_counter() - t < 20  # a bound against a hang, not a timing (busy CI cores)
    assert p.returncode == 130, stderr
    assert stderr == "layerloom: interrupted; nothing written\n"
    assert "Layerloom: training" not in rest
    assert not out.exists()  # the device's probe cache aside, nothing beside the inputs
    assert sorted(set(os.listdir(tmp_path)) - {"cache"}) == ["big.csv", "p.loom"]
    assert not (tmp_path / "cache" / "images").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, line", [
    (signal.SIGINT, 130, "layerloom: interrupted; nothing written\n"),
    (signal.SIGTERM, 143, "layerloom: terminated (SIGTERM); nothing written\n")])
def test_a_signal_while_the_cli_decodes_images_leaves_no_temporary(tmp_path, private_cache,
                                                                      sig, code, line):
    """The read is cancelled at its next progress call, so the image cache's temporary file
    is removed before the exit (launch.py's exit at once would leave it)."""
    rng = np.random.default_rng(0)
    for c in "ab":
        os.makedirs(tmp_path / "imgs" / c)
        for i in range(2000):
            Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    with open(os.path.join(EXAMPLES, "shapes_folder.loom"), encoding="utf-8") as f:
        d = json.load(f)
    d["dataset"]["path"] = str(tmp_path / "imgs")
    (tmp_path / "p.loom").write_text(json.dumps(d))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "layerloom.app", "--run",
                          str(tmp_path / "p.loom"), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for text in p.stdout:
        if text.startswith("Decoding imgs"):
            break
    else:
        pytest.fail(f"no decoding line; stderr: {p.stderr.read()}")
    time.sleep(0.1)
    t = time.perf_counter()
    p.send_signal(sig)
    _, stderr = p.communicate(timeout=60)
    assert time.perf_counter() - t < 20  # a bound against a hang, not a timing (busy CI cores)
    assert p.returncode == code and stderr == line
    assert not out.exists() and os.listdir(private_cache) == []


@pytest.mark.parametrize("source, dataset, says", [
    ("keras", {"source": "keras", "name": "fashion_mnist"}, "fashion_mnist (keras)"),
    ("csv", {"source": "csv", "path": "data/wine.csv"}, "data/wine.csv (csv)"),
    ("synthetic", {"source": "synthetic", "name": "spirals"}, "spirals (synthetic)"),
])
def test_the_cli_says_what_it_reads_before_reading(source, dataset, says):
    """Issue 32, item 3: --run printed nothing for the 1.2 s Fashion-MNIST took to prepare
    (small files show no percentages); the first line now says what is read, for every
    source, before it is read."""
    from layerloom.cli import run
    assert run.reading_line(dataset) == f"Reading the data: {says}\n"
