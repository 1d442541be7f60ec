"""Whole-model training speed against PyTorch CPU (issue 28 item 5, issue 29 item 3): one
training step (forward, loss, backward, optimizer) of each model, timed in Layerloom and in
PyTorch side by side in one run, with each side's peak memory. Prints a table with ratios and
writes JSON.

    python -m bench.models [--only NAME[,NAME]] [--steps N] [--warmup N] [--device SPEC]
        [--threads N] [--json bench/results/models.json]

Models (the same architecture, batch, loss and optimizer on both sides, random data):

- mobilenet_v2: Keras' MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
  classes=10) saved to a temporary .keras file and read by Layerloom's Keras importer (as
  `layerloom --import` does); PyTorch: torchvision's mobilenet_v2(width_mult=0.35,
  num_classes=10) (its C ops need not load: the two operator names its import registers
  fakes for are declared first). Batch 32.
- transformer: a 2-layer post-norm transformer encoder, sequence 128, width 128, 4 heads,
  feed-forward 256 (ReLU), a mean-pooled 10-class head, batch 32; Layerloom's graph built here
  from MultiHeadAttention, Add, LayerNormalization, Dense and GlobalAveragePooling1D; PyTorch:
  nn.TransformerEncoder(batch_first=True, norm_first=False, dropout=0).
- resnet: a ResNet-style CNN on 32x32x3: a 3x3 stem, 3 stages of 2 basic blocks (16/32/64
  filters, BatchNormalization, a 1x1 projection where the shape changes), global average
  pooling, 10 classes, batch 32; both sides built here.

Every model ends in a 10-way softmax trained with sparse categorical cross-entropy and Adam
(learning rate 1e-3). Each side runs in a child process of its own (peak memory is that child's
maximum resident set, bench/train.py's run_measured): it builds the model, runs --warmup steps
(kernels compile, GEMM plans are made), then times --steps steps, each waited for (Layerloom:
the device queue finished; PyTorch: the step returns). The table gives the best and the
median step; `ratio` is Layerloom / PyTorch of the medians; each side's loss at its first and
last step (the same batch every step: it falls on both sides) shows that both train. The
Layerloom device is chosen once, by the parent, for every model (--device: as `layerloom
--device` takes it). A model that fails to build on a side is skipped with its error. Never
run as a test: timings need a quiet machine. On a busy one PyTorch's OpenMP threads stall each
other (its MobileNetV2 step took 7x longer on 2 threads than on --threads 1 while other work
ran), so its ratios there say nothing.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a file: bench.train is imported from the repository root
    sys.path.insert(0, ROOT)
CLASSES = 10
LEARNING_RATE = 1e-3
TRANSFORMER = {"seq": 128, "width": 128, "heads": 4, "ff": 256, "layers": 2}
RESNET_FILTERS = (16, 32, 64)
RESNET_BLOCKS = 2
BN_EPSILON = 1e-3  # Keras' default; the PyTorch models are given the same


# -- Layerloom graphs ---------------------------------------------------------------------------
class _Builder:
    """A Graph built layer by layer: add() wires a new node to the nodes it reads (port order)
    and returns its id."""

    def __init__(self):
        from layerloom.core.graph import Graph
        self.g = Graph()
        self.count = 0

    def add(self, type_id, params=None, *srcs):
        self.count += 1
        nid = f"{type_id.lower()}_{self.count}"
        self.g.add_node(type_id, params or {}, id=nid)
        for port, src in enumerate(srcs):
            self.g.connect(src, 0, nid, port)
        return nid


def transformer_graph(seq=TRANSFORMER["seq"], width=TRANSFORMER["width"],
                      heads=TRANSFORMER["heads"], ff=TRANSFORMER["ff"],
                      layers=TRANSFORMER["layers"]):
    """PyTorch's TransformerEncoderLayer (post-norm, ReLU, no dropout) in Layerloom's layers:
    x = LN(x + MHA(x, x)); x = LN(x + Dense(Dense(x, relu))); then the mean over the sequence
    and a softmax classifier."""
    b = _Builder()
    x = b.add("Input", {"shape": [seq, width]})
    ln = {"epsilon": 1e-5}  # PyTorch's LayerNorm
    for _ in range(layers):
        attn = b.add("MultiHeadAttention", {"num_heads": heads, "key_dim": width // heads}, x, x)
        x = b.add("LayerNormalization", ln, b.add("Add", {}, x, attn))
        h = b.add("Dense", {"units": ff, "activation": "relu"}, x)
        h = b.add("Dense", {"units": width}, h)
        x = b.add("LayerNormalization", ln, b.add("Add", {}, x, h))
    pooled = b.add("GlobalAveragePooling1D", {}, x)
    b.add("Dense", {"units": CLASSES, "activation": "softmax"}, pooled)
    return b.g


def resnet_graph(size=32, filters=RESNET_FILTERS, blocks=RESNET_BLOCKS):
    """A CIFAR-style ResNet: conv-BN-ReLU stem, basic blocks (conv-BN-ReLU-conv-BN plus the
    shortcut, a strided 1x1 conv-BN where the shape changes, then ReLU), global average
    pooling, softmax."""
    b = _Builder()

    def conv_bn(src, f, k, stride):
        c = b.add("Conv2D", {"filters": f, "kernel_size": [k, k], "strides": [stride, stride],
                             "padding": "same", "use_bias": False}, src)
        return b.add("BatchNormalization", {"epsilon": BN_EPSILON}, c)

    x = b.add("Input", {"shape": [size, size, 3]})
    x = b.add("Activation", {"activation": "relu"}, conv_bn(x, filters[0], 3, 1))
    channels = filters[0]
    for stage, f in enumerate(filters):
        for block in range(blocks):
            stride = 2 if stage and not block else 1
            h = b.add("Activation", {"activation": "relu"}, conv_bn(x, f, 3, stride))
            h = conv_bn(h, f, 3, 1)
            short = conv_bn(x, f, 1, stride) if stride != 1 or channels != f else x
            x = b.add("Activation", {"activation": "relu"}, b.add("Add", {}, h, short))
            channels = f
    pooled = b.add("GlobalAveragePooling2D", {}, x)
    b.add("Dense", {"units": CLASSES, "activation": "softmax"}, pooled)
    return b.g


def keras_mobilenet_file(path):
    """Keras' MobileNetV2 (alpha 0.35, 96x96x3, 10 classes, random weights) saved at path."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
                                           classes=CLASSES)
    model.save(path)
    return path


def mobilenet_graph(keras_path):
    """(graph, weights) of the Keras MobileNetV2 file, through Layerloom's Keras importer."""
    from layerloom import interop
    project, weights = interop.importer(keras_path).read(keras_path)
    return project.graph, weights


# -- PyTorch models -----------------------------------------------------------------------------
def torch_transformer(torch, seq=TRANSFORMER["seq"], width=TRANSFORMER["width"],
                      heads=TRANSFORMER["heads"], ff=TRANSFORMER["ff"],
                      layers=TRANSFORMER["layers"]):
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(width, heads, ff, dropout=0.0, activation="relu",
                                               batch_first=True, norm_first=False)
            # the nested-tensor fast path is for inference; training takes the plain one
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Linear(width, CLASSES)

        def forward(self, x):
            return self.head(self.encoder(x).mean(dim=1))
    return Encoder()


def torch_resnet(torch, filters=RESNET_FILTERS, blocks=RESNET_BLOCKS):
    nn = torch.nn

    def conv_bn(cin, f, k, stride):
        return nn.Sequential(nn.Conv2d(cin, f, k, stride=stride, padding=k // 2, bias=False),
                             nn.BatchNorm2d(f, eps=BN_EPSILON))

    class Block(nn.Module):
        def __init__(self, cin, f, stride):
            super().__init__()
            self.a, self.b = conv_bn(cin, f, 3, stride), conv_bn(f, f, 3, 1)
            self.short = conv_bn(cin, f, 1, stride) if stride != 1 or cin != f else nn.Identity()

        def forward(self, x):
            return torch.relu(self.b(torch.relu(self.a(x))) + self.short(x))

    mods, cin = [conv_bn(3, filters[0], 3, 1), nn.ReLU()], filters[0]
    for stage, f in enumerate(filters):
        for block in range(blocks):
            mods.append(Block(cin, f, 2 if stage and not block else 1))
            cin = f
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, CLASSES)]
    return nn.Sequential(*mods)


_TORCHVISION_LIB = []


def torch_mobilenet(torch):
    """torchvision's mobilenet_v2(width_mult=0.35, num_classes=10). torchvision 0.28's import
    registers fake kernels for its C operators nms and qnms, which fails when its C library
    does not load; declaring the two operators first lets the (pure Python) model code load."""
    if "torchvision" not in sys.modules and not hasattr(torch.ops.torchvision, "nms"):
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_LIB.append(lib)  # kept alive: the declarations go with the object
    import torchvision
    return torchvision.models.mobilenet_v2(width_mult=0.35, num_classes=CLASSES)


# name: (per-sample input shape channels-last, PyTorch's input axes from it)
MODELS = {
    "mobilenet_v2": ((96, 96, 3), (2, 0, 1)),
    "transformer": ((TRANSFORMER["seq"], TRANSFORMER["width"]), (0, 1)),
    "resnet": ((32, 32, 3), (2, 0, 1)),
}


def torch_model(torch, name):
    return {"mobilenet_v2": torch_mobilenet, "transformer": torch_transformer,
            "resnet": torch_resnet}[name](torch)


def layerloom_graph(name, keras_path=None):
    """(graph, weights or None) of a model."""
    if name == "mobilenet_v2":
        return mobilenet_graph(keras_path)
    return {"transformer": transformer_graph, "resnet": resnet_graph}[name](), None


# -- one side's timing, in a child process ------------------------------------------------------
def _data(name, batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + MODELS[name][0]).astype(np.float32)
    y = rng.integers(0, CLASSES, batch)
    return x, y


def time_layerloom(name, batch, steps, warmup, device, keras_path):
    from layerloom.backend.runtime import Runtime, choose_device
    from layerloom.train.fit import Trainer
    from layerloom.train.losses import Loss
    from layerloom.train.model import Model
    from layerloom.train.optimizers import Adam
    from layerloom.train.session import fused_outputs
    graph, weights = layerloom_graph(name, keras_path)
    rt = Runtime(choose_device(device))
    (out,) = graph.outputs()
    losses = {out: Loss("sparse_categorical_crossentropy")}
    model = Model(graph, rt, batch, seed=1, fused_logits=fused_outputs(graph, losses),
                  weights=weights)
    opt = Adam(**dict({p.name: p.default for p in Adam.params}, learning_rate=LEARNING_RATE))
    trainer = Trainer(model, losses, [], opt)
    x, y = _data(name, batch)
    xs, ys = {graph.inputs()[0]: x}, {out: y.astype(np.float32)}
    times, step_losses = [], []
    for step in range(warmup + steps):
        trainer.reset()  # the loss sums start from zero (fit does this each epoch)
        t0 = time.perf_counter()
        trainer.train_batch(xs, ys, batch, step)
        rt.finish()
        times.append(time.perf_counter() - t0)
        step_losses.append(trainer.read_logs()["loss"])  # outside the timed step
    return {"device": rt.describe(), "step_s": times[warmup:], "losses": step_losses,
            "nodes": len(graph.nodes)}


def time_torch(name, batch, steps, warmup, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(torch, name)
    model.train()
    x, y = _data(name, batch)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose((0,) + tuple(
        1 + a for a in MODELS[name][1]))))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=1e-7)  # Keras' epsilon
    loss_fn = torch.nn.CrossEntropyLoss()
    times, losses = [], []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())  # outside the timed step
    return {"torch": torch.__version__, "threads": threads, "step_s": times[warmup:],
            "losses": losses}


def child(args):
    """--side: build one model on one side, time it, print one JSON line (an "error" entry
    when the model does not build or train)."""
    try:
        if args.side == "layerloom":
            r = time_layerloom(args.only, args.batch, args.steps, args.warmup, args.device,
                               args.keras_file)
        else:
            r = time_torch(args.only, args.batch, args.steps, args.warmup, args.threads)
    except Exception as e:  # reported by the parent as this model's skip, with its cause
        r = {"error": f"{type(e).__name__}: {e}",
             "where": traceback.format_exc().strip().splitlines()[-3:]}
    print(json.dumps(r))
    return 0


# -- the parent: both sides of each model, the table ----------------------------------------------
def device_spec(spec):
    """The device the children use, as "platform:device": chosen once here (the default is
    picked by a speed probe, which a busy machine can tip from one driver to another between
    processes), so every model runs on the same one."""
    from layerloom.backend.runtime import choose_device, list_devices
    dev = choose_device(spec)
    return next(f"{pi}:{di}" for pi, di, _, d in list_devices() if d == dev)


def run_side(side, name, args, keras_path):
    from bench.train import run_measured
    cmd = [sys.executable, "-m", "bench.models", "--side", side, "--only", name,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch",
           str(args.batch), "--threads", str(args.threads)]
    if args.device:
        cmd += ["--device", args.device]
    if keras_path:
        cmd += ["--keras-file", keras_path]
    try:
        out, mib = run_measured(cmd)
    except SystemExit as e:  # the child crashed outright (not an error it caught)
        return {"error": str(e).strip().splitlines()[-1]}
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_mib"] = mib
    if "step_s" in r:
        r["best_s"], r["median_s"] = min(r["step_s"]), statistics.median(r["step_s"])
    return r


def main(argv=None):
    from bench.layer_sweep import device_arguments
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated model names: " + ", ".join(MODELS))
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    device_arguments(ap, "models.json")
    ap.add_argument("--side", choices=("layerloom", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--keras-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        return child(args)
    args.device = device_spec(args.device)
    names = args.only.split(",") if args.only else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model {', '.join(unknown)}; expected {', '.join(MODELS)}")
    print(f"{len(names)} models, batch {args.batch}, {args.warmup} warm-up + {args.steps} "
          f"timed steps per side, PyTorch on {args.threads} threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            keras_path = None
            row = {"model": name, "batch": args.batch, "steps": args.steps}
            if name == "mobilenet_v2":
                keras_path = os.path.join(tmp, "mobilenet_v2.keras")
                try:
                    keras_mobilenet_file(keras_path)
                except Exception as e:
                    row["layerloom"] = {"error": f"Keras could not build the model: "
                                                 f"{type(e).__name__}: {e}"}
            if "layerloom" not in row:
                row["layerloom"] = run_side("layerloom", name, args, keras_path)
            row["torch"] = run_side("torch", name, args, None)
            ll, tr = row["layerloom"], row["torch"]
            if "median_s" in ll and "median_s" in tr:
                row["ratio"] = ll["median_s"] / tr["median_s"]
                row["best_ratio"] = ll["best_s"] / tr["best_s"]
                row["memory_ratio"] = ll["peak_mib"] / tr["peak_mib"]
            rows.append(row)
            _print_row(row)
    device = next((r["layerloom"]["device"] for r in rows if "device" in r["layerloom"]), None)
    print(f"Layerloom device: {device}; ratio: Layerloom / PyTorch of the median step "
          "(best: of the best steps); memory: of the peak resident sets")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"device": device, "threads": args.threads, "warmup": args.warmup,
                   "models": rows}, f, indent=2)
    print(f"wrote {args.json}")
    return 0


_HEADER = False


def _print_row(r):
    global _HEADER
    if not _HEADER:
        print(f"{'model':13s} {'LL med ms':>9s} {'LL best':>8s} {'PT med ms':>9s} "
              f"{'PT best':>8s} {'ratio':>6s} {'best x':>6s} {'LL MiB':>7s} {'PT MiB':>7s} "
              f"{'mem x':>6s}  {'LL loss':>11s}  {'PT loss':>11s}")
        _HEADER = True
    ll, tr = r["layerloom"], r["torch"]
    for side, res in (("Layerloom", ll), ("PyTorch", tr)):
        if "error" in res:
            print(f"{r['model']:13s} skipped on {side}: {res['error']}")
            for line in res.get("where", []):
                print(f"{'':13s}   {line}")
    if "ratio" not in r:
        return
    print(f"{r['model']:13s} {ll['median_s'] * 1e3:9.1f} {ll['best_s'] * 1e3:8.1f} "
          f"{tr['median_s'] * 1e3:9.1f} {tr['best_s'] * 1e3:8.1f} {r['ratio']:6.2f} "
          f"{r['best_ratio']:6.2f} {ll['peak_mib']:7.0f} {tr['peak_mib']:7.0f} "
          f"{r['memory_ratio']:6.2f}  {_losses(ll)}  {_losses(tr)}", flush=True)


def _losses(side):
    """The first step's loss and the last's (the same batch every step: both should fall)."""
    return f"{side['losses'][0]:5.2f}>{side['losses'][-1]:5.2f}"


if __name__ == "__main__":
    sys.exit(main())
