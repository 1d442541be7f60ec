"""A shape sweep: one layer's training step (forward and backward timed separately) in
Layerloom and in PyTorch CPU, side by side in one run, as ratios. Prints a table and writes JSON.

    python -m bench.layer_sweep [--quick | --full] [--only Conv2D,Dense] [--repeat 5]
        [--device SPEC] [--threads N] [--json bench/results/layer_sweep.json]
    python -m bench.layer_sweep --markdown [bench/results/layer_sweep.json]  # the table again

Each case builds the graph Input -> Identity -> layer with random weights (its input gradient
computed, as in the middle of a network), runs a few warm-up steps (the
kernels compile and the GEMM plans are made there), then times `repeat` forward passes in
training mode and `repeat` backward passes, waiting for the device after each. PyTorch runs the
same layer (NCHW, its default; the same arithmetic) with autograd: the forward with the graph
recorded, the backward from a random output gradient. `ratio` is Layerloom / PyTorch of the
forward + backward time (a training step of this layer, without the optimizer); the targets
in issue 29 are at most 1.5 for every shape. Never run as a test: timings need a quiet machine.

--quick (the default) is the grid a 2-core machine runs in a few minutes: Conv2D over filters
8..256 at 28x28 and 56x56 (3x3, same and valid, stride 1 and 2; 1x1 and 5x5 at 16 and 64
filters), batch 32; Dense widths 16..4096; the poolings; BatchNormalization;
LayerNormalization; the recurrent layers; the layers of issue 28 (DepthwiseConv2D,
SeparableConv2D, Conv2DTranspose, MultiHeadAttention, GroupNormalization, the 3-D
convolution and poolings at keras.io's 3-D CNN's sizes). --full adds
112x112, batch 128 and every combination (hours on 2 cores). Layers the engine does not have
yet are skipped with their name printed.
"""
import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILTERS = (8, 16, 32, 64, 128, 256)


def conv_cases(full):
    sizes = (28, 56, 112) if full else (28, 56)
    batches = (32, 128) if full else (32,)
    kernels = (1, 3, 5)
    for f, k, pad, s, hw, b in itertools.product(FILTERS, kernels, ("same", "valid"), (1, 2),
                                                 sizes, batches):
        if not full and (k != 3 and f not in (16, 64) or hw * hw * f * f > 56 * 56 * 128 * 128
                         or (k == 1 and pad == "valid")):
            continue
        yield ("Conv2D", {"filters": f, "kernel_size": [k, k], "strides": [s, s],
                          "padding": pad, "activation": "relu"}, (hw, hw, f), b)
    # a first layer: one or three channels in (the 7.7x cliff of issue 29 started here)
    for c, f in ((1, 16), (3, 32)):
        yield ("Conv2D", {"filters": f, "kernel_size": [3, 3], "padding": "same",
                          "activation": "relu"}, (28, 28, c), 32)


def dense_cases(full):
    widths = (16, 64, 256, 1024, 4096)
    for w in widths:
        yield ("Dense", {"units": w, "activation": "relu"}, (w,), 128)
    if full:
        for w in widths:
            yield ("Dense", {"units": w, "activation": "relu"}, (w,), 32)


def other_cases(full):
    yield ("MaxPooling2D", {"pool_size": [2, 2]}, (28, 28, 32), 32)
    yield ("MaxPooling2D", {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"},
           (56, 56, 64), 32)
    yield ("AveragePooling2D", {"pool_size": [2, 2]}, (28, 28, 32), 32)
    yield ("GlobalAveragePooling2D", {}, (14, 14, 128), 32)
    yield ("BatchNormalization", {}, (28, 28, 32), 32)
    yield ("LayerNormalization", {}, (128, 128), 32)
    for kind in ("LSTM", "GRU", "SimpleRNN"):
        yield (kind, {"units": 128, "return_sequences": True}, (64, 64), 32)
    # the modern layers (issue 28), skipped while the engine lacks them
    yield ("DepthwiseConv2D", {"kernel_size": [3, 3], "padding": "same"}, (56, 56, 32), 32)
    yield ("Conv2DTranspose", {"filters": 32, "kernel_size": [3, 3], "strides": [2, 2],
                               "padding": "same"}, (28, 28, 32), 32)
    yield ("MultiHeadAttention", {"num_heads": 4, "key_dim": 32}, (128, 128), 32)
    yield ("SeparableConv2D", {"filters": 64, "kernel_size": [3, 3], "padding": "same"},
           (28, 28, 32), 32)
    yield ("GroupNormalization", {"groups": 8}, (28, 28, 32), 32)
    # the 3-D layers: keras.io's 3-D CNN (3D_image_classification) at a 46^3 input, batch 2
    yield ("Conv3D", {"filters": 16, "kernel_size": [3, 3, 3], "activation": "relu"},
           (46, 46, 46, 1), 2)
    yield ("Conv3D", {"filters": 32, "kernel_size": [3, 3, 3], "activation": "relu"},
           (22, 22, 22, 16), 2)
    yield ("MaxPooling3D", {"pool_size": [2, 2, 2]}, (44, 44, 44, 16), 2)
    yield ("AveragePooling3D", {"pool_size": [3, 3, 3], "strides": [2, 2, 2],
                                "padding": "same"}, (21, 21, 21, 16), 2)


# -- PyTorch: the same layer --------------------------------------------------------------------
def torch_module(torch, kind, p, shape):
    nn = torch.nn
    if kind == "Conv2D":
        k, s = p["kernel_size"][0], p.get("strides", [1, 1])[0]
        pad = "same" if p["padding"] == "same" and s == 1 else 0
        conv = nn.Conv2d(shape[-1], p["filters"], k, stride=s, padding=pad)
        if p["padding"] == "same" and s > 1:  # TF's same: pad after more than before
            h = shape[0]
            out = -(-h // s)
            total = max((out - 1) * s + k - h, 0)
            conv = nn.Sequential(nn.ZeroPad2d((total // 2, total - total // 2) * 2), conv)
        return nn.Sequential(conv, nn.ReLU()), (shape[-1],) + tuple(shape[:-1])
    if kind == "Conv3D":  # valid
        return nn.Sequential(nn.Conv3d(shape[-1], p["filters"], p["kernel_size"][0]),
                             nn.ReLU()), (shape[-1],) + tuple(shape[:-1])
    if kind in ("MaxPooling3D", "AveragePooling3D"):  # same on odd sizes: even padding
        k, s = p["pool_size"][0], p.get("strides", p["pool_size"])[0]
        pad = (k - 1) // 2 if p.get("padding") == "same" else 0
        cls = nn.MaxPool3d if kind == "MaxPooling3D" else nn.AvgPool3d
        kw = {} if kind == "MaxPooling3D" else {"count_include_pad": False}
        return cls(k, s, padding=pad, **kw), (shape[-1],) + tuple(shape[:-1])
    if kind == "Dense":
        return nn.Sequential(nn.Linear(shape[0], p["units"]), nn.ReLU()), shape
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        k, s = p["pool_size"][0], p.get("strides", p["pool_size"])[0]
        pad = (k - 1) // 2 if p.get("padding") == "same" else 0
        cls = nn.MaxPool2d if kind == "MaxPooling2D" else nn.AvgPool2d
        return cls(k, s, padding=pad), (shape[-1],) + tuple(shape[:-1])
    if kind == "GlobalAveragePooling2D":
        return nn.AdaptiveAvgPool2d(1), (shape[-1],) + tuple(shape[:-1])
    if kind == "BatchNormalization":
        return nn.BatchNorm2d(shape[-1]), (shape[-1],) + tuple(shape[:-1])
    if kind == "LayerNormalization":
        return nn.LayerNorm(shape[-1]), shape
    if kind in ("LSTM", "GRU", "SimpleRNN"):
        cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "SimpleRNN": nn.RNN}[kind]
        rnn = cls(shape[-1], p["units"], batch_first=True)

        class First(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = rnn

            def forward(self, x):
                return self.rnn(x)[0]
        return First(), shape
    if kind == "DepthwiseConv2D":
        c = shape[-1]
        return nn.Conv2d(c, c, p["kernel_size"][0], padding="same", groups=c), \
            (c,) + tuple(shape[:-1])
    if kind == "SeparableConv2D":  # Keras': the depthwise part without a bias
        c, k = shape[-1], p["kernel_size"][0]
        return nn.Sequential(nn.Conv2d(c, c, k, padding="same", groups=c, bias=False),
                             nn.Conv2d(c, p["filters"], 1)), (c,) + tuple(shape[:-1])
    if kind == "GroupNormalization":
        return nn.GroupNorm(p["groups"], shape[-1], eps=1e-3), (shape[-1],) + tuple(shape[:-1])
    if kind == "Conv2DTranspose":
        return nn.ConvTranspose2d(shape[-1], p["filters"], p["kernel_size"][0],
                                  stride=p["strides"][0], padding=1, output_padding=1), \
            (shape[-1],) + tuple(shape[:-1])
    if kind == "MultiHeadAttention":
        mha = nn.MultiheadAttention(shape[-1], p["num_heads"], batch_first=True)

        class Self(nn.Module):
            def __init__(self):
                super().__init__()
                self.mha = mha

            def forward(self, x):
                return self.mha(x, x, x, need_weights=False)[0]
        return Self(), shape
    raise KeyError(kind)


def time_torch(torch, kind, p, shape, batch, repeat, warmup):
    m, tshape = torch_module(torch, kind, p, shape)
    m.train()
    x = torch.randn((batch,) + tuple(tshape), requires_grad=True)
    y = m(x)
    dy = torch.randn_like(y)
    fw, bw = [], []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        y = m(x)
        t1 = time.perf_counter()
        y.backward(dy)
        t2 = time.perf_counter()
        if i >= warmup:
            fw.append(t1 - t0)
            bw.append(t2 - t1)
    return min(fw), min(bw)


# -- Layerloom ------------------------------------------------------------------------------------
def time_layerloom(rt, kind, p, shape, batch, repeat, warmup):
    from layerloom.core.graph import Graph
    from layerloom.train.model import Model

    class MidNetwork(Model):
        """The layer as if it sat in the middle of a network: its input gradient is computed
        too (PyTorch's input requires grad), which the engine skips right after an Input."""
        def _build(self):
            # NOTE: every node's backward runs (a layer without weights after the Input had
            # none: its backward went untimed, 0.00 ms, until the 3-D layers' sweep showed it)
            self.needs_grad = set(self.order)
            super()._build()

    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="in")
    g.add_node("Identity", {}, id="mid")
    g.add_node(kind, p, id="node")
    g.connect("in", 0, "mid", 0)
    for port in range(2 if kind == "MultiHeadAttention" else 1):
        g.connect("mid", 0, "node", port)
    m = MidNetwork(g, rt, batch_size=batch, seed=1)
    rng = np.random.default_rng(0)
    m.load_inputs({"in": rng.standard_normal((batch,) + tuple(shape)).astype(np.float32)})
    out = m.output("node")
    rt.write(m.grad[("node", 0)].buf,
             rng.standard_normal((batch,) + out.shape).astype(np.float32))
    rt.finish()
    fw, bw = [], []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        m.forward(batch, training=True, step=i)
        rt.finish()
        t1 = time.perf_counter()
        m.backward(batch, step=i)
        rt.finish()
        t2 = time.perf_counter()
        if i >= warmup:
            fw.append(t1 - t0)
            bw.append(t2 - t1)
    return min(fw), min(bw)


def label(kind, p, shape, batch):
    keys = {k: v for k, v in p.items() if k not in ("activation",)}
    short = ",".join(f"{k.split('_')[0]}={v[0] if isinstance(v, list) else v}"
                     for k, v in keys.items())
    return f"{kind}({short}) in {'x'.join(map(str, shape))} b{batch}"


def device_arguments(ap, results):
    """--device, --threads and --json (bench/results/<results>), as the benches share them."""
    ap.add_argument("--device", help="Layerloom's OpenCL device (as layerloom --device takes)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="PyTorch's threads (default: every core, as Layerloom's device uses)")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", results))


def markdown(path):
    """A results file (--json) as a Markdown table, for docs/performance.md: every case, its
    forward and backward ms beside PyTorch's, and the ratio of the training step."""
    with open(path) as f:
        d = json.load(f)
    lines = [f"Device: {d['device']}; PyTorch {d['torch']} on {d['threads']} threads.", "",
             "| case | Layerloom fw + bw ms | PyTorch fw + bw ms | ratio |",
             "| --- | ---: | ---: | ---: |"]
    for r in d["cases"]:
        ratio = f"**{r['ratio']:.2f}**" if r["ratio"] > 1.5 else f"{r['ratio']:.2f}"
        lines.append(f"| {label(r['layer'], r['params'], r['shape'], r['batch'])} | "
                     f"{r['layerloom_forward_s'] * 1e3:.2f} + {r['layerloom_backward_s'] * 1e3:.2f}"
                     f" | {r['torch_forward_s'] * 1e3:.2f} + {r['torch_backward_s'] * 1e3:.2f} | "
                     f"{ratio} |")
    return "\n".join(lines)


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--markdown"]:  # python -m bench.layer_sweep --markdown results.json
        print(markdown(argv[1] if len(argv) > 1 else
                       os.path.join(ROOT, "bench", "results", "layer_sweep.json")))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    grid = ap.add_mutually_exclusive_group()
    grid.add_argument("--quick", action="store_true", help="the default grid")
    grid.add_argument("--full", action="store_true", help="every combination (hours)")
    ap.add_argument("--only", help="comma-separated layer types")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    device_arguments(ap, "layer_sweep.json")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from layerloom.backend.runtime import Runtime, choose_device
    from layerloom.core.registry import get_layer
    rt = Runtime(choose_device(args.device))
    only = set(args.only.split(",")) if args.only else None
    cases = [c for gen in (conv_cases, dense_cases, other_cases) for c in gen(args.full)
             if only is None or c[0] in only]
    print(f"device: {rt.describe()}; PyTorch {torch.__version__}, {args.threads} threads; "
          f"{len(cases)} cases, best of {args.repeat}")
    print(f"{'case':58s} {'fw ms':>8s} {'bw ms':>8s} {'torch fw':>8s} {'torch bw':>8s} "
          f"{'fw x':>5s} {'bw x':>5s} {'step x':>6s}")
    rows, missing = [], set()
    for kind, p, shape, batch in cases:
        if get_layer(kind) is None:
            missing.add(kind)
            continue
        lf, lb = time_layerloom(rt, kind, p, shape, batch, args.repeat, args.warmup)
        tf, tb = time_torch(torch, kind, p, shape, batch, args.repeat, args.warmup)
        row = {"layer": kind, "params": p, "shape": list(shape), "batch": batch,
               "layerloom_forward_s": lf, "layerloom_backward_s": lb,
               "torch_forward_s": tf, "torch_backward_s": tb,
               "forward_ratio": lf / tf, "backward_ratio": lb / tb,
               "ratio": (lf + lb) / (tf + tb)}
        rows.append(row)
        flag = "  over 1.5" if row["ratio"] > 1.5 else ""
        print(f"{label(kind, p, shape, batch)[:58]:58s} {lf * 1e3:8.2f} {lb * 1e3:8.2f} "
              f"{tf * 1e3:8.2f} {tb * 1e3:8.2f} {row['forward_ratio']:5.2f} "
              f"{row['backward_ratio']:5.2f} {row['ratio']:6.2f}{flag}", flush=True)
    over = [r for r in rows if r["ratio"] > 1.5]
    print(f"{len(rows)} cases, {len(over)} over 1.5x PyTorch's training step"
          + (f"; not in the engine yet: {', '.join(sorted(missing))}" if missing else ""))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"device": rt.describe(), "torch": torch.__version__,
                   "threads": args.threads, "cases": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
