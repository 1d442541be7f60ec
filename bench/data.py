"""The data benchmark (issue 32): Layerloom's data sources side by side with `np.loadtxt` and
pandas reading the same files, in one run. One command:

    python bench/data.py [--quick] [--no-10m] [--npy-mb 2048] [--images 20000] [--stream]
                         [--readers "R1;R2"] [--json out.json] [--keep DIR]

Cases (synthetic, learnable files, written once into a temporary folder or --keep DIR):
- CSV 1M and 10M rows x 21 numbers (20 features and a 0/1 label), CSV 1M rows of 3 text
  columns (50 categories each) and 10 numbers (`--quick`: 100k rows of each instead);
- a float32 .npy of --npy-mb MB (0: none) with its labels, and a folder of --images 32x32 PNGs
  in 10 class folders (0: none, the default), each through Layerloom's sources only.

Readers, each in a child process of its own (peak = the child's peak resident set, VmHWM,
reset before it starts; "own" = that less what the process held before, the interpreter,
numpy and the library imported):
- "layerloom load": the project's source loaded (`prepare.load_arrays`: the CSV read and
  encoded to float32 matrices, split 80/10/10);
- "layerloom ready": what `layerloom --run` does before its first batch (`prepare_data`:
  loading, the checks, standardisation fitted on the training rows) and the first batch of
  1024 shuffled rows taken: the time to the first batch, less the OpenCL kernels' compilation;
- with --stream, "layerloom ready (streamed)": the same with the memory available set to 1
  byte ($LAYERLOOM_MEMORY_AVAILABLE), so the CSV takes the path of a table larger than memory
  (read into files, converted to the data cache, trained from memory-mapped), and "layerloom
  ready (streamed, cached)": the next run, reading the cache's entry;
- "np.loadtxt" (numbers only) and "pandas" (`read_csv`, text columns one-hot by
  `get_dummies`, `to_numpy(float32)`): the file to one float32 matrix. pandas is not a
  dependency: without it the bench says "pandas not installed" and goes on.

Prints a table (seconds, CPU seconds of the child, rows per second, peak and own MB, time, CPU
time and memory against pandas; the JSON adds "own_anon_peak_mb", the child's largest RssAnon
seen every 20 ms less the same before: its own memory, without the pages of a memory-mapped
file it read or wrote, which the peak resident set counts) and
writes the results as JSON (--json). Not a test: nothing here asserts a time.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csv_load import _status_kb, reset_peak, write_case  # noqa: E402  (the same files)

BATCH = 1024


def csv_cases(quick, big):
    k = 100_000 if quick else 1_000_000
    label = "100k" if quick else "1M"
    cases = [(f"CSV {label} x 21 numbers", k, 21, 0)]
    if big and not quick:
        cases.append(("CSV 10M x 21 numbers", 10_000_000, 21, 0))
    cases.append((f"CSV {label} x (3 text + 10 numbers)", k, 10, 3))
    return cases


def project(dataset, features, classes=2, image=None):
    """A small model over the data: what a user would train (the bench only loads)."""
    shape = list(image) if image else [features]
    nodes = [{"id": "x", "type": "Input", "params": {"shape": shape}}]
    if image:
        nodes.append({"id": "flat", "type": "Flatten", "params": {}})
    nodes += [{"id": "hidden", "type": "Dense", "params": {"units": 32, "activation": "relu"}},
              {"id": "y", "type": "Dense", "params": {"units": classes,
                                                      "activation": "softmax"}}]
    ids = [n["id"] for n in nodes]
    return {"format": "layerloom-project", "version": 1, "name": "data bench",
            "graph": {"nodes": nodes, "edges": [{"from": [a, 0], "to": [b, 0]}
                                                for a, b in zip(ids, ids[1:])]},
            "dataset": dataset,
            "training": {"optimizer": {"name": "adam", "params": {"learning_rate": 0.001}},
                         "loss": {"y": "sparse_categorical_crossentropy"},
                         "metrics": ["accuracy"], "epochs": 1, "batch_size": BATCH,
                         "seed": 0, "shuffle": True}}


class AnonPeak:
    """The largest RssAnon (the process's own pages, not those of a file it maps) seen every
    20 ms by a thread: the peak the kernel's VmHWM, which counts a mapped file's pages too,
    does not give."""

    def __init__(self):
        import threading
        self.peak, self.done = _status_kb("RssAnon"), threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, _status_kb("RssAnon"))

    def stop(self):
        self.done.set()
        self.thread.join()
        return max(self.peak, _status_kb("RssAnon"))


def child(reader, spec):
    """Runs in the child: one reading, a JSON line."""
    before = reset_peak()
    anon_before, anon = _status_kb("RssAnon"), AnonPeak()
    t0, c0 = time.perf_counter(), os.times()
    if reader.startswith("layerloom"):
        from layerloom.data import prepare
        from layerloom.project import loom
        proj = loom.load(spec["project"])
        if reader == "layerloom load":
            a = prepare.load_arrays(proj)
            rows = sum(len(next(iter(s.values()))) for s in (a.train, a.validation, a.test)
                       if s)
            shape = list(a.train["x"].shape)
        else:
            data = prepare.prepare_data(proj)
            x = next(iter(data.x.values()))
            order = np.random.default_rng(0).permutation(len(x))[:BATCH]
            batch = np.asarray(x[np.sort(order)], np.float32)
            rows = len(x) + (len(data.validation[1][next(iter(data.validation[1]))])
                             if data.validation else 0) + (
                len(next(iter(data.x_test.values()))) if data.x_test else 0)
            shape = [len(x)] + list(batch.shape[1:])
    elif reader == "np.loadtxt":
        x = np.loadtxt(spec["path"], delimiter=",", skiprows=1, dtype=np.float32)
        rows, shape = len(x), list(x.shape)
    elif reader == "np.load (mmap)":
        x = np.load(spec["path"], mmap_mode="r")
        order = np.sort(np.random.default_rng(0).permutation(len(x))[:BATCH])
        batch = np.asarray(x[order], np.float32)
        rows, shape = len(x), list(x.shape)
    else:
        import pandas as pd
        df = pd.read_csv(spec["path"])
        if spec["texts"]:
            df = pd.get_dummies(df, columns=[f"t{j}" for j in range(spec["texts"])],
                                dtype=np.float32)
        x = df.to_numpy(np.float32)
        rows, shape = len(x), list(x.shape)
    seconds, c1 = time.perf_counter() - t0, os.times()
    peak = _status_kb("VmHWM")
    anon_peak = anon.stop()
    cpu = c1.user - c0.user + c1.system - c0.system  # steadier than seconds on a busy machine
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "rows_per_s": rows / seconds, "rows": rows,
                      "peak_mb": peak / 1024, "own_peak_mb": (peak - before) / 1024,
                      "own_anon_peak_mb": (anon_peak - anon_before) / 1024,
                      "shape": shape}))


def run_child(reader, spec):
    """reader: a child's reader, with " (cached)" (a second run of it) or " (streamed...)"
    (the memory available set to 1 byte: a table larger than memory) after it."""
    env = {**os.environ, "XDG_CACHE_HOME": spec["cache"]}
    env.pop("LAYERLOOM_CACHE_DIR", None)
    if "(streamed" in reader:
        env["LAYERLOOM_MEMORY_AVAILABLE"] = "1"
    reader = reader.split(" (")[0]
    code = ("import sys; sys.path.insert(0, %r); import numpy; import data; "
            "data.child(%r, %r)" % (os.path.dirname(os.path.abspath(__file__)), reader, spec))
    if reader.startswith("layerloom"):  # imported before the baseline is taken
        code = ("import layerloom.data.prepare, layerloom.data.userdata, "
                "layerloom.project.loom; " + code)
    elif reader == "pandas":
        code = "import pandas; " + code
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def write_project(folder, name, dataset, features, **kw):
    path = os.path.join(folder, name + ".loom")
    with open(path, "w") as f:
        json.dump(project(dataset, features, **kw), f)
    return path


def write_npy(folder, mb):
    """A float32 (N, 64) array of about `mb` MB and its 0/1 labels, written a block at a time."""
    x_path, y_path = os.path.join(folder, f"x_{mb}mb.npy"), os.path.join(folder, f"y_{mb}mb.npy")
    n = (mb << 20) // (64 * 4)
    if not os.path.exists(y_path):
        rng = np.random.default_rng(0)
        w = rng.normal(size=64)
        x = np.lib.format.open_memmap(x_path + ".part", "w+", np.float32, (n, 64))
        y = np.empty(n, np.float32)
        for s in range(0, n, 1 << 18):
            block = rng.normal(size=(min(1 << 18, n - s), 64)).astype(np.float32)
            x[s:s + len(block)] = block
            y[s:s + len(block)] = block @ w > 0
        x.flush()
        del x
        os.replace(x_path + ".part", x_path)
        np.save(y_path, y)
    return x_path, y_path, n


def write_images(folder, count):
    """`count` 32x32 grayscale PNGs in 10 class folders (a bright square whose place is the
    class, on noise)."""
    from PIL import Image
    root = os.path.join(folder, f"images_{count}")
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    rng = np.random.default_rng(0)
    for k in range(count):
        c = k % 10
        d = os.path.join(root, f"class_{c}")
        if k < 10:
            os.makedirs(d, exist_ok=True)
        a = rng.integers(0, 100, size=(32, 32), dtype=np.uint8)
        a[(c // 5) * 16:(c // 5) * 16 + 12, (c % 5) * 6:(c % 5) * 6 + 6] = 255
        Image.fromarray(a).save(os.path.join(d, f"{k:06d}.png"))
    open(done, "w").close()
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k-row CSV files, no 10M")
    ap.add_argument("--no-10m", action="store_true", help="leave out the 10M-row CSV")
    ap.add_argument("--npy-mb", type=int, default=2048, help="size of the .npy case (0: none)")
    ap.add_argument("--images", type=int, default=0, help="PNG files in the image-folder case")
    ap.add_argument("--stream", action="store_true",
                    help="the CSV cases through the path of a table larger than memory too")
    ap.add_argument("--readers",
                    help="only these readers (names as printed, separated by semicolons)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", help="write the data here (kept, reused) instead of a temp folder")
    args = ap.parse_args()
    try:
        import pandas  # noqa: F401
        have_pandas = True
    except ImportError:
        have_pandas = False
        print("pandas not installed: its rows are left out (pip install pandas to add them)")
    folder = args.keep or tempfile.mkdtemp(prefix="layerloom-data-bench-")
    os.makedirs(folder, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="layerloom-data-bench-cache-")
    runs = []  # (case, file MB, readers, spec)
    split = {"test": 0.1, "validation": 0.1, "seed": 0}
    for case, rows, numbers, texts in csv_cases(args.quick, not args.no_10m):
        path = os.path.join(folder, case.replace(" ", "_").replace("(", "").replace(")", "")
                            .replace("+", "") + ".csv")
        if not os.path.exists(path):
            print(f"writing {path}", flush=True)
            write_case(path, rows, numbers, texts)
        proj = write_project(folder, os.path.basename(path)[:-4], {
            "source": "csv", "path": os.path.basename(path), "split": split,
            "normalize": "standardize"}, numbers - 1 + 50 * texts)
        readers = ["layerloom load", "layerloom ready"] + (
            ["layerloom ready (streamed)", "layerloom ready (streamed, cached)"]
            if args.stream else []) + ([] if texts else ["np.loadtxt"]) + (
            ["pandas"] if have_pandas else [])
        runs.append((case, path, readers, {"path": path, "project": proj, "texts": texts}))
    if args.npy_mb:
        x_path, y_path, n = write_npy(folder, args.npy_mb)
        proj = write_project(folder, f"npy_{args.npy_mb}mb", {
            "source": "npy", "arrays": {"x": os.path.basename(x_path),
                                        "y": os.path.basename(y_path)},
            "split": split, "normalize": "standardize"}, 64)
        runs.append((f".npy {n:,} x 64 float32", x_path, ["layerloom ready", "np.load (mmap)"],
                     {"path": x_path, "project": proj, "texts": 0}))
    if args.images:
        root = write_images(folder, args.images)
        proj = write_project(folder, f"images_{args.images}", {
            "source": "images", "path": os.path.basename(root), "size": [32, 32],
            "color": "grayscale", "split": {"validation": 0.1, "seed": 0}}, 0, classes=10,
            image=(32, 32, 1))
        # the first run fills the decoded-image cache, the second reads it
        runs.append((f"image folder {args.images:,} PNGs 32x32", root,
                     ["layerloom ready", "layerloom ready (cached)"],
                     {"path": root, "project": proj, "texts": 0}))
    results = []
    print(f"{'case':34} {'MB':>6}  {'reader':34} {'seconds':>8} {'CPU s':>6} {'rows/s':>10} "
          f"{'peak MB':>8} {'own MB':>7} {'t/pandas':>8} {'CPU/pandas':>10} {'own/pandas':>10}")
    keep = set(args.readers.split(";")) if args.readers else None
    for case, path, readers, spec in runs:
        readers = [r for r in readers if keep is None or r in keep]
        spec["cache"] = cache
        mb = (os.path.getsize(path) if os.path.isfile(path) else 0) / 2 ** 20
        rows = []
        for reader in readers:
            r = run_child(reader, spec)
            r.update({"case": case, "file_mb": round(mb, 1), "reader": reader})
            rows.append(r)
        ref = next((r for r in rows if r["reader"] == "pandas" and "seconds" in r), None)
        for r in rows:
            if ref and "seconds" in r:
                r["time_vs_pandas"] = r["seconds"] / ref["seconds"]
                r["cpu_vs_pandas"] = r["cpu_s"] / ref["cpu_s"]
                r["own_vs_pandas"] = r["own_peak_mb"] / ref["own_peak_mb"]
            results.append(r)
            if "seconds" in r:
                ratios = (f"{r['time_vs_pandas']:8.2f} {r['cpu_vs_pandas']:10.2f} "
                          f"{r['own_vs_pandas']:10.2f}" if "time_vs_pandas" in r else "")
                print(f"{case:34} {mb:6.0f}  {r['reader']:34} {r['seconds']:8.2f} "
                      f"{r['cpu_s']:6.1f} {r['rows_per_s']:10,.0f} {r['peak_mb']:8.0f} "
                      f"{r['own_peak_mb']:7.0f} {ratios}", flush=True)
            else:
                print(f"{case:34} {mb:6.0f}  {r['reader']:34} {r['error']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "results": results}, f, indent=2)
    if not args.keep:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    import shutil
    shutil.rmtree(cache, ignore_errors=True)


def machine():
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), "?") if os.path.exists("/proc/cpuinfo") else "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB"


if __name__ == "__main__":
    main()
