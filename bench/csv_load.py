"""Reading CSV files (issue 32): seconds and peak memory of Layerloom's CSV source
(`userdata.load_csv`: the file read by `tabular.read`, then encoded to float32 arrays) side by
side with `np.loadtxt` (and pandas, where it is installed) on the same synthetic files:

- 100k rows x 21 numbers (20 features and a 0/1 label), 1M rows of the same;
- 1M rows of 3 text columns (50 categories each) and 10 numbers (the last the label).

Each reading runs in a child process of its own: "peak MB" is its peak resident set (VmHWM,
reset before reading), "own MB" that less what it held before reading (the interpreter, numpy,
Layerloom). Prints a
table and writes JSON (--json). `--before DIR` also runs the Layerloom code in DIR (a checkout's
engine/ folder, e.g. `git worktree add /tmp/before <commit>` then `--before /tmp/before/engine`)
as "layerloom (before)". Not a test: nothing here asserts a time.

    python bench/csv_load.py [--quick] [--before DIR] [--json out.json] [--keep DIR]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = {  # name: (rows, numbers, text columns)
    "100k x 21 numbers": (100_000, 21, 0),
    "1M x 21 numbers": (1_000_000, 21, 0),
    "1M x (3 text + 10 numbers)": (1_000_000, 10, 3),
}


def write_case(path, rows, numbers, texts, seed=0, block=100_000):
    """A learnable table: the label (last column) is 1 where a weighted sum of the features
    (text columns by their category number) is positive."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=numbers - 1 + texts)
    names = [f"t{j}" for j in range(texts)] + [f"x{j}" for j in range(numbers - 1)] + ["y"]
    cats = [f"cat_{k:02d}" for k in range(50)]
    with open(path, "w", newline="") as f:
        f.write(",".join(names) + "\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, numbers - 1)).astype(np.float32)
            t = rng.integers(0, 50, size=(n, texts))
            y = ((np.concatenate([(t - 24.5) / 14.4, x], 1) @ w) > 0).astype(int)
            cols = [np.array(cats, dtype=object)[t[:, j]] for j in range(texts)]
            cols += [np.char.mod("%.5g", x[:, j]) for j in range(numbers - 1)]
            cols.append(y.astype(str))
            f.write("\n".join(",".join(r) for r in zip(*cols)) + "\n")


def _status_kb(field):
    """VmRSS / VmHWM of this process in KB (Linux), else the peak from getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak():
    """The resident KB now, the peak (VmHWM) reset to it: the peak from here on
    (getrusage's would count the parent's memory at the fork)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kb("VmRSS")


def child(reader, path, texts):
    """Runs in the child: read the file once, print a JSON line."""
    before = reset_peak()
    t0 = time.perf_counter()
    if reader.startswith("layerloom"):
        from layerloom.data import userdata
        a = userdata.load_csv({}, path)
        shape = list(a.train["x"].shape)
    elif reader == "np.loadtxt":
        if texts:
            print(json.dumps({"skipped": "np.loadtxt reads numbers only"}))
            return
        x = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
        shape = list(x.shape)
    else:
        import pandas as pd
        df = pd.read_csv(path)
        if texts:
            df = pd.get_dummies(df, columns=[f"t{j}" for j in range(texts)], dtype=np.float32)
        x = df.to_numpy(np.float32)
        shape = list(x.shape)
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "own_peak_mb":
                      (peak - before) / 1024, "shape": shape}))


def run_child(reader, path, texts, before_dir=None):
    env = dict(os.environ)
    if reader == "layerloom (before)":
        env["PYTHONPATH"] = before_dir + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import sys; sys.path.insert(0, %r); import numpy; import csv_load; "
            "csv_load.child(%r, %r, %d)" % (os.path.dirname(os.path.abspath(__file__)),
                                           reader, path, texts))
    if reader.startswith("layerloom"):  # imported before the baseline is taken
        code = "import layerloom.data.userdata; " + code
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the 100k-row case")
    ap.add_argument("--before", help="an older checkout's engine/ folder, run as well")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", help="write the CSV files here (kept) instead of a temp folder")
    args = ap.parse_args()
    readers = ["layerloom"]
    before_dir = None
    if args.before:
        before_dir = tempfile.mkdtemp(prefix="layerloom-before-")
        os.symlink(os.path.abspath(args.before), os.path.join(before_dir, "layerloom"))
        readers.insert(0, "layerloom (before)")
    readers.append("np.loadtxt")
    try:
        import pandas  # noqa: F401
        readers.append("pandas")
    except ImportError:
        pass
    folder = args.keep or tempfile.mkdtemp(prefix="layerloom-csv-bench-")
    os.makedirs(folder, exist_ok=True)
    cases = list(CASES)[:1] if args.quick else list(CASES)
    results = []
    print(f"{'case':28} {'MB':>5}  {'reader':20} {'seconds':>8} {'peak MB':>8} {'own MB':>8}")
    for case in cases:
        rows, numbers, texts = CASES[case]
        path = os.path.join(folder, case.replace(" ", "_").replace("(", "").replace(")", "")
                            .replace("+", "") + ".csv")
        if not os.path.exists(path):
            write_case(path, rows, numbers, texts)
        mb = os.path.getsize(path) / 2 ** 20
        for reader in readers:
            r = run_child(reader, path, texts, before_dir)
            r.update({"case": case, "file_mb": round(mb, 1), "reader": reader})
            results.append(r)
            if "seconds" in r:
                print(f"{case:28} {mb:5.0f}  {reader:20} {r['seconds']:8.2f} {r['peak_mb']:8.0f} "
                      f"{r['own_peak_mb']:8.0f}", flush=True)
            else:
                print(f"{case:28} {mb:5.0f}  {reader:20} {r.get('skipped') or r['error']}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(json.dumps(results))
    if not args.keep:
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)


if __name__ == "__main__":
    main()
