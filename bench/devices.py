"""Training speed per OpenCL implementation, side by side in one run: the Fashion-MNIST MLP
example through `layerloom --run` on each CPU implementation the portability matrix finds
(bench/matrix.py: bundled PoCL 3.0, Debian's PoCL, Intel's CPU runtime; with --install it
installs them), alternating the implementations round by round and keeping each one's best
epoch after the first. Prints seconds per epoch and each against the reference (Debian's
PoCL where present, else the bundled one), and the issue's target: Intel's runtime within
1.3x of PoCL 3.1. Needs the Fashion-MNIST files (see README).

    python bench/devices.py [--install] [--epochs 3] [--rounds 2] [--only NAME[,NAME]]
        [--json bench/results/devices.json]
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `python bench/devices.py` puts bench/, not the root, on the path

from bench import matrix  # noqa: E402

CPU_IMPLS = ("pocl-3.0", "pocl-3.0-zen4", "pocl-system", "intel")
TARGET = 1.3  # Intel's runtime against Debian's PoCL 3.1 (issue 14)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", help="comma-separated implementation names")
    ap.add_argument("--json", default=os.path.join("bench", "results", "devices.json"))
    args = ap.parse_args(argv)
    if not matrix.fashion_mnist_installed():
        raise SystemExit("needs Fashion-MNIST: apt-get install dataset-fashion-mnist")
    want = set(args.only.split(",")) if args.only else set(CPU_IMPLS)
    impls = [i for i in matrix.find_implementations(args.install) if i.name in want]
    base = dict(os.environ, PYTHONPATH=ROOT)
    for k in ("OCL_ICD_VENDORS", "LAYERLOOM_DEVICE", "LD_PRELOAD"):
        base.pop(k, None)
    runs = {}
    for impl in impls:
        if impl.missing:
            print(f"{impl.name}: {impl.missing}")
            continue
        spec, dev = matrix.pick_device(impl, base)
        if spec is None:
            print(f"{impl.name}: {dev}")
            continue
        runs[impl.name] = {"env": dict(base, **impl.env), "device": dev, "epochs": [],
                           "first": []}
    for r in range(args.rounds):
        for name, run in runs.items():
            h = matrix.run_example("fashion_mnist_mlp", run["env"], epochs=args.epochs)
            if isinstance(h, str):
                raise SystemExit(f"{name}: {h}")
            secs = [e["seconds"] for e in h["epochs"]]
            run["first"].append(secs[0])
            run["epochs"] += secs[1:]
            run["accuracy"] = h.get("test", {}).get("accuracy")
            run["described"] = h["device"]
            print(f"round {r + 1}: {name}: {', '.join(f'{s:.2f}' for s in secs)} s", flush=True)
    ref = "pocl-system" if "pocl-system" in runs else "pocl-3.0"
    best = {n: min(r["epochs"]) for n, r in runs.items() if r["epochs"]}
    print(f"\n{'implementation':16s} {'device':60s} {'s/epoch':>8s} {'x ' + ref:>14s} "
          f"{'test acc':>8s}")
    rows = []
    for name, run in runs.items():
        ratio = best[name] / best[ref] if ref in best else None
        rows.append({"implementation": name, "device": run["described"],
                     "best_epoch_seconds": best[name], "epoch_seconds": run["epochs"],
                     "first_epoch_seconds": run["first"], "ratio_to_" + ref: ratio,
                     "test_accuracy": run.get("accuracy")})
        print(f"{name:16s} {run['described'][:60]:60s} {best[name]:8.2f} "
              f"{(f'{ratio:.2f}' if ratio else '-'):>14s} {run.get('accuracy') or 0:8.4f}")
    if "intel" in best and "pocl-system" in best:
        r = best["intel"] / best["pocl-system"]
        print(f"\nIntel runtime / PoCL system: {r:.2f} (target {TARGET}: "
              f"{'met' if r <= TARGET else 'not met'})")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"epochs": args.epochs, "rounds": args.rounds, "rows": rows}, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
