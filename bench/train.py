"""Training speed and memory against PyTorch CPU, side by side in one run: the Fashion-MNIST
MLP and CNN example projects through `layerloom --run`, the same models in PyTorch
(bench/torch_reference.py) and in Keras 3 on TensorFlow (bench/keras_reference.py), each in
its own process so peak memory (max RSS) is per run. Prints a table of seconds per epoch after
the first, the first epoch against later ones, and peak memory, with ratios; writes JSON.
Needs the Fashion-MNIST files (see README) and, for the references, `pip install torch` (on
our machines: torch==2.13.0, a local CPU wheel) and tensorflow, in this Python or another one
named by --keras-python (TensorFlow's pins need not meet ours: a venv of its own is fine).

    python bench/train.py [--mlp-epochs 3] [--cnn-epochs 2] [--skip-cnn] [--device SPEC]
        [--user-cnn-epochs N] [--cold-cache] [--keras-python PATH] [--json bench/results/train.json]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


_WRAP = ("import resource, subprocess, sys\n"
         "r = subprocess.run(sys.argv[1:])\n"
         "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
         "file=sys.stderr)\n"
         "sys.exit(r.returncode)\n")


def run_measured(cmd, env=None):
    """(stdout, peak RSS in MiB) of a child process: a one-child wrapper reports the maximum
    resident set size of that child alone."""
    p = subprocess.run([sys.executable, "-c", _WRAP] + cmd, capture_output=True, text=True,
                       cwd=ROOT, env=env)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    kib = int(p.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    return p.stdout, kib / 1024.0


def layerloom(project, epochs, device, cold=False):
    """project: a file name in assets/examples/, or a path (bench/projects/)."""
    """cold: with empty kernel caches (PoCL's and pyopencl's, under XDG_CACHE_HOME), so the
    first epoch includes compiling every kernel, as on a machine's first run."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "layerloom.cli", "--run", os.path.join(EXAMPLES, project),
               "--epochs", str(epochs), "--out", out]
        if device:
            cmd += ["--device", device]
        env = None
        if cold:
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(out, "cache"),
                       POCL_CACHE_DIR=os.path.join(out, "cache", "pocl"))
        _, rss = run_measured(cmd, env)
        with open(os.path.join(out, "history.json")) as f:
            h = json.load(f)
    secs = [e["seconds"] for e in h["epochs"]]
    return {"epoch_seconds": secs, "peak_mib": rss, "device": h["device"],
            "accuracy": h["epochs"][-1].get("accuracy")}


def reference(script, python, kind, epochs):
    """Run bench/<script> with python (None: not installed) and return its JSON line with the
    child's peak memory."""
    if python is None:
        return None
    out, rss = run_measured([python, os.path.join(ROOT, "bench", script), kind, str(epochs)])
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_mib"] = rss
    return r


def later(secs):
    rest = secs[1:] or secs
    return sum(rest) / len(rest)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlp-epochs", type=int, default=3, help="0: not run")
    ap.add_argument("--cnn-epochs", type=int, default=2, help="0: not run")
    ap.add_argument("--skip-cnn", action="store_true")
    ap.add_argument("--user-cnn-epochs", type=int, default=0,
                    help="also issue 29's own small CNN (16 filters, same padding, batch 32) "
                    "and its residual variant, bench/projects/ (0: not run)")
    ap.add_argument("--device")
    ap.add_argument("--cold-cache", action="store_true",
                    help="also train once with empty kernel caches and report that first epoch")
    ap.add_argument("--keras-python", help="a Python with tensorflow (default: this one, "
                    "if it has tensorflow)")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "train.json"))
    args = ap.parse_args(argv)
    if args.keras_python is None and importlib.util.find_spec("tensorflow") is not None:
        args.keras_python = sys.executable
    # targets: issue 29 (the MLP at most 0.5x PyTorch CPU, the CNN 0.7x, the user CNNs 1.2x)
    runs = [("mlp", "fashion_mnist_mlp.loom", args.mlp_epochs, 0.5)] if args.mlp_epochs else []
    if not args.skip_cnn and args.cnn_epochs:
        runs.append(("cnn", "fashion_mnist_cnn.loom", args.cnn_epochs, 0.7))
    if args.user_cnn_epochs:
        for kind, target in (("user_cnn", 1.2), ("user_residual_cnn", 1.2)):
            runs.append((kind, os.path.join(ROOT, "bench", "projects", f"{kind}.loom"),
                         args.user_cnn_epochs, target))
    rows = []
    for kind, project, epochs, target in runs:
        ll = layerloom(project, epochs, args.device)
        torch_python = sys.executable if importlib.util.find_spec("torch") else None
        tr = reference("torch_reference.py", torch_python, kind, epochs)
        kr = reference("keras_reference.py", args.keras_python if kind in ("mlp", "cnn")
                       else None, kind, epochs)
        row = {"model": kind, "epochs": epochs, "layerloom": ll, "torch": tr, "keras": kr,
               "target_time_ratio": target}
        row["layerloom_s_per_epoch"] = later(ll["epoch_seconds"])
        row["first_vs_later"] = ll["epoch_seconds"][0] / row["layerloom_s_per_epoch"]
        if args.cold_cache:
            cold = layerloom(project, 1, args.device, cold=True)
            row["layerloom_cold_cache"] = cold
            row["cold_first_vs_later"] = cold["epoch_seconds"][0] / row["layerloom_s_per_epoch"]
        if tr:
            row["torch_s_per_epoch"] = later(tr["epoch_seconds"])
            row["time_ratio"] = row["layerloom_s_per_epoch"] / row["torch_s_per_epoch"]
            row["memory_ratio"] = ll["peak_mib"] / tr["peak_mib"]
        if kr:
            row["keras_s_per_epoch"] = later(kr["epoch_seconds"])
            row["keras_speedup"] = row["keras_s_per_epoch"] / row["layerloom_s_per_epoch"]
        rows.append(row)
    print(f"device: {rows[0]['layerloom']['device']}")
    nan = float("nan")
    print(f"{'model':17s} {'Layerloom s/ep':>14s} {'PyTorch s/ep':>12s} {'ratio':>6s} {'target':>6s} "
          f"{'Keras s/ep':>10s} {'speedup':>7s} {'1st/later':>9s} {'cold':>5s} "
          f"{'Layerloom MiB':>13s} {'PyTorch MiB':>11s} {'Keras MiB':>9s}")
    for r in rows:
        tr, kr = r["torch"] or {}, r["keras"] or {}
        print(f"{r['model']:17s} {r['layerloom_s_per_epoch']:14.2f} "
              f"{r.get('torch_s_per_epoch', nan):12.2f} {r.get('time_ratio', nan):6.2f} "
              f"{r['target_time_ratio']:6.1f} {r.get('keras_s_per_epoch', nan):10.2f} "
              f"{r.get('keras_speedup', nan):7.2f} {r['first_vs_later']:9.2f} "
              f"{r.get('cold_first_vs_later', nan):5.2f} "
              f"{r['layerloom']['peak_mib']:13.0f} {tr.get('peak_mib', nan):11.0f} "
              f"{kr.get('peak_mib', nan):9.0f}")
    print("ratio: Layerloom time / PyTorch time (target at most the target column); speedup: "
          "Keras time / Layerloom time (target at least 2 for the MLP); 1st/later: first epoch "
          "/ later ones (target at most 1.5), with the kernel caches as they are; cold: the same "
          "with empty caches (--cold-cache), as on a machine's first run")
    if not args.keras_python:
        print("Keras/TensorFlow: not found; give --keras-python PATH for the Keras column")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
