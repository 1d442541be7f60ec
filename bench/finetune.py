"""Fine-tuning against training from scratch (issue 30, item 3), on synthetic tasks that share
their features: a body (two Dense layers) trained on task A (16 classes, 20,000 samples), frozen,
a new head fine-tuned on task B (4 other classes of the same features, 100 samples), against
the same network trained on task B alone.

    python bench/finetune.py [--epochs 30] [--seed 0]

Prints the test accuracy on task B after each epoch for both, and the epoch at which each first
reaches the target accuracy (--target, default 0.7). The figures (PoCL CPU, seed 0): 100 samples,
fine-tuned 0.742 after 30 epochs (0.70 at epoch 12), from scratch 0.617 (never 0.70); 300
samples (--samples 300): 0.807 against 0.752, though from scratch passes 0.70 first (epoch 2
against 4).

    python bench/finetune.py --cnn [--lr 0 0.01] [--scratch-lr 0.001 0.01] [--samples 20]

The CNN case: a small CNN (three Conv2D, two MaxPooling2D, GlobalAveragePooling2D) trained on
task A, 7 shapes the bundled folder does not hold (ellipses and rectangles that are not circles
or squares, stars, crosses, rings, half discs, bars: drawn as assets/examples/data/make_shapes.py
draws), then Model.fine_tune at its default cut (the pooling before task A's classifier:
everything up to it frozen, a Dropout 0.2 + Dense 3 head starting at zero, Adam at the plan's
tenth of task A's 0.003, or each --lr; 0: the plan's) on --samples images per class of the
bundled shapes folder (circle, square, triangle), against the same network trained from scratch
on them (Adam at each --scratch-lr). Test accuracy on the folder's other 840 images after each
epoch. The figures (PoCL CPU, seed 0, 20 images per class; task A 0.862): fine-tuned at the
plan's 3e-4 0.704 after 30 epochs (0.60 at epoch 15), at 0.01 0.842 (0.60 at epoch 2, 0.80 at
6); from scratch 0.542 at 0.001 and 0.533 at 0.01 (never 0.60). Before the head started at zero
(Keras' glorot kernel) the plan's rate reached 0.392 after 30 epochs: the kept layers' features
are unnormalised, the head's first guesses confident and wrong."""
import argparse
import copy
import math
import os
import time

import numpy as np

from layerloom import api
from layerloom.core.graph import Graph
from layerloom.project.loom import Project

D, H, K, KA = 20, 64, 4, 16


def tasks(seed):
    """x -> (label A, label B): two heads over one hidden feature map."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(D, 16)) / np.sqrt(D)
    WA, WB = rng.normal(size=(16, KA)), rng.normal(size=(16, K))

    def sample(n):
        x = rng.normal(size=(n, D)).astype(np.float32)
        f = np.tanh(2 * x @ U)
        return x, np.argmax(f @ WA, 1).astype(np.float32), np.argmax(f @ WB, 1).astype(np.float32)
    return sample


def project(head, seed, lr, classes=K):
    g = Graph()
    g.add_node("Input", {"shape": [D]}, id="x")
    g.add_node("Dense", {"units": H, "activation": "relu"}, id="h1")
    g.add_node("Dense", {"units": H, "activation": "relu"}, id="h2")
    g.add_node("Dense", {"units": classes, "activation": "softmax"}, id=head)
    for a, b in (("x", "h1"), ("h1", "h2"), ("h2", head)):
        g.connect(a, 0, b, 0)
    p = Project(g)
    p.training.update({"loss": {head: {"name": "sparse_categorical_crossentropy"}},
                       "metrics": ["accuracy"], "batch_size": 32, "seed": seed,
                       "optimizer": {"name": "adam", "params": {"learning_rate": lr}}})
    return p


def curve(model, xb, yb, xt, yt, epochs):
    acc = []
    for _ in range(epochs):
        model.fit(xb, yb, epochs=1, verbose=False)
        acc.append(float(np.mean(np.argmax(model.predict(xt), 1) == yt)))
    return acc


SHAPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                      "examples", "data", "shapes")
A_KINDS = ("ellipse", "rectangle", "star", "cross", "ring", "half", "bar")


def draw_a(kind, rng, size=28):
    """A task-A image: as make_shapes.draw, other shapes."""
    from PIL import Image, ImageDraw
    big = size * 4
    im = Image.new("L", (big, big), int(rng.integers(0, 60)))
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.22, 0.4) * big
    cx, cy = rng.uniform(r, big - r, 2)
    fill = int(rng.integers(150, 256))
    angle = rng.uniform(0, 2 * math.pi)
    if kind in ("ellipse", "rectangle"):  # not a circle or square: one side 0.4-0.75 of the other
        q = rng.uniform(0.4, 0.75)
        pts = [(-r, -r * q), (r, -r * q), (r, r * q), (-r, r * q)] if kind == "rectangle" else [
            (r * math.cos(t), r * q * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 48)]
        c, sn = math.cos(angle), math.sin(angle)
        d.polygon([(cx + x * c - y * sn, cy + x * sn + y * c) for x, y in pts], fill=fill)
    elif kind == "star":
        pts = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.cos(angle + math.pi * k / 5),
                cy + (r if k % 2 == 0 else 0.45 * r) * math.sin(angle + math.pi * k / 5))
               for k in range(10)]
        d.polygon(pts, fill=fill)
    elif kind == "cross":
        w = r * 0.35
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            d.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=fill, width=int(w))
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=int(r * 0.35))
    elif kind == "half":
        deg = math.degrees(angle)
        d.pieslice([cx - r, cy - r, cx + r, cy + r], deg, deg + 180, fill=fill)
    else:
        dx, dy = r * math.cos(angle), r * math.sin(angle)
        d.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=fill, width=int(r * 0.3))
    a = np.asarray(im.resize((size, size), Image.LANCZOS), np.float64)
    a += rng.normal(0, 8, a.shape)
    return np.clip(a, 0, 255)


def task_a(n, rng):
    y = rng.integers(0, len(A_KINDS), n)
    x = np.stack([draw_a(A_KINDS[k], rng) for k in y])[..., None] / 255.0
    return x.astype(np.float32), y.astype(np.float32)


def shapes_folder(per_class, rng):
    """(x, y) for training (per_class images of each class) and the rest for testing."""
    from PIL import Image
    tr, te = [], []
    for k, c in enumerate(sorted(os.listdir(SHAPES))):
        files = sorted(os.listdir(os.path.join(SHAPES, c)))
        rng.shuffle(files)
        for i, f in enumerate(files):
            a = np.asarray(Image.open(os.path.join(SHAPES, c, f)).convert("L"), np.float32)
            (tr if i < per_class else te).append((a[..., None] / 255.0, k))
    return [(np.stack([a for a, _ in part]), np.array([k for _, k in part], np.float32))
            for part in (tr, te)]


def cnn_project(seed, lr):
    g = Graph()
    g.add_node("Input", {"shape": [28, 28, 1]}, id="image")
    layers = (("conv", "Conv2D", {"filters": 16, "kernel_size": [3, 3], "activation": "relu"}),
              ("pool", "MaxPooling2D", {"pool_size": [2, 2]}),
              ("conv_2", "Conv2D", {"filters": 32, "kernel_size": [3, 3], "activation": "relu"}),
              ("pool_2", "MaxPooling2D", {"pool_size": [2, 2]}),
              ("conv_3", "Conv2D", {"filters": 32, "kernel_size": [3, 3], "activation": "relu"}),
              ("gap", "GlobalAveragePooling2D", {}),
              ("head_a", "Dense", {"units": len(A_KINDS), "activation": "softmax"}))
    prev = "image"
    for nid, t, params in layers:
        g.add_node(t, params, id=nid)
        g.connect(prev, 0, nid, 0)
        prev = nid
    p = Project(g)
    p.training.update({"loss": {"head_a": {"name": "sparse_categorical_crossentropy"}},
                       "metrics": ["accuracy"], "batch_size": 16, "seed": seed,
                       "optimizer": {"name": "adam", "params": {"learning_rate": lr}}})
    return p


def cnn_case(a):
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    xa, ya = task_a(a.pre_samples, rng)
    xat, yat = task_a(500, rng)
    (xb, yb), (xt, yt) = shapes_folder(a.samples, rng)
    pre = api.Model(cnn_project(a.seed, 0.003))
    pre.fit(xa, ya, epochs=a.pre_epochs, verbose=False)
    pre_acc = float(np.mean(np.argmax(pre.predict(xat), 1) == yat))
    t1 = time.perf_counter()
    body = {k: v.copy() for k, v in pre.get_weights().items() if not k.startswith("head_a/")}
    curves, times, frozen, kept = {}, [], None, True
    for lr in a.lr or [0]:  # 0: the plan's rate
        tuned = pre.fine_tune(classes=3)  # the default cut: gap, before the classifier
        opt = tuned.project.training["optimizer"]["params"]
        if lr:
            opt["learning_rate"] = lr
        t = time.perf_counter()
        curves[f"tuned {opt['learning_rate']:g}" + ("" if lr else " (plan)")] = curve(
            tuned, xb, yb, xt, yt, a.epochs)
        times.append(time.perf_counter() - t)
        kept = kept and all(np.array_equal(tuned.get_weights()[k], v) for k, v in body.items())
        frozen = tuned.frozen
    for lr in a.scratch_lr:
        scratch_project = copy.deepcopy(tuned.project)
        for nid in scratch_project.graph.frozen():
            scratch_project.graph.set_trainable(nid, True)
        scratch_project.training["optimizer"]["params"]["learning_rate"] = lr
        t = time.perf_counter()
        curves[f"scratch {lr:g}"] = curve(api.Model(scratch_project), xb, yb, xt, yt, a.epochs)
        times.append(time.perf_counter() - t)
    print(f"task A ({len(A_KINDS)} classes, {a.pre_samples} images, {a.pre_epochs} epochs): test "
          f"accuracy {pre_acc:.3f} ({t1 - t0:.0f} s); frozen by fine_tune: {frozen}; "
          f"the frozen body unchanged by fine-tuning: {kept}")
    print(f"task B: the shapes folder, {a.samples} training images per class, {len(yt)} test "
          f"images; Adam at each learning rate; seconds: "
          + ", ".join(f"{k} {v:.0f}" for k, v in zip(curves, times)))
    return curves


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cnn", action="store_true", help="the CNN case on the shapes folder")
    ap.add_argument("--epochs", type=int, default=None, help="30")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=None, help="0.7 (the CNN case: 0.6)")
    ap.add_argument("--samples", type=int, default=None,
                    help="task B's training samples: 100 (the CNN case: 20 per class)")
    ap.add_argument("--pre-samples", type=int, default=None, help="task A's: 20000 (CNN 5000)")
    ap.add_argument("--pre-epochs", type=int, default=None, help="20 (the CNN case: 8)")
    ap.add_argument("--lr", type=float, default=None, nargs="*",
                    help="the fine-tuned head's: 0.01 (the CNN case: the plan's; several: a "
                    "fine-tuned column each; 0: the plan's)")
    ap.add_argument("--scratch-lr", type=float, default=[1e-3], nargs="+",
                    help="the CNN case's network from scratch: Adam at each (0.001)")
    a = ap.parse_args()
    dense = {"epochs": 30, "target": 0.7, "samples": 100, "pre_samples": 20000,
             "pre_epochs": 20, "lr": 0.01}
    cnn = {"epochs": 30, "target": 0.6, "samples": 20, "pre_samples": 5000, "pre_epochs": 8,
           "lr": None}
    for k, v in (cnn if a.cnn else dense).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.cnn:
        report(a, cnn_case(a), "")
        return
    a.lr = a.lr[0] if isinstance(a.lr, list) else a.lr
    sample = tasks(a.seed)
    xa, ya, _ = sample(a.pre_samples)
    xb, _, yb = sample(a.samples)
    xt, yta, yt = sample(2000)
    pre = api.Model(project("head_a", a.seed, 0.003, KA))
    pre.fit(xa, ya, epochs=a.pre_epochs, verbose=False)
    pre_acc = float(np.mean(np.argmax(pre.predict(xt), 1) == yta))
    body = {k: v for k, v in pre.get_weights().items() if k.startswith(("h1/", "h2/"))}
    tuned = api.Model(project("head_b", a.seed + 1, a.lr))
    init = tuned.session.model.get_weights()
    tuned.set_weights({**init, **body})
    tuned.freeze(before="head_b")
    scratch = api.Model(project("head_b", a.seed + 1, a.lr))
    ft = curve(tuned, xb, yb, xt, yt, a.epochs)
    sc = curve(scratch, xb, yb, xt, yt, a.epochs)
    kept = all(np.array_equal(tuned.get_weights()[k], v) for k, v in body.items())
    print(f"task A (pre-training): test accuracy {pre_acc:.3f}; the frozen body unchanged by "
          f"fine-tuning: {kept}")
    report(a, {"fine-tuned": ft, "from scratch": sc}, f"; frozen: {tuned.frozen}")


def report(a, curves, note):
    """The accuracy after each epoch, a column per curve, and where each reaches --target."""
    names = list(curves)
    print("epoch  " + "  ".join(names) + f"  (test accuracy on task B, {a.samples} training "
          "samples" + (" per class)" if a.cnn else ")"))
    for e in range(a.epochs):
        print(f"{e + 1:5d}  " + "  ".join(f"{curves[n][e]:{len(n)}.3f}" for n in names))

    def first(c):
        return next((e for e, v in enumerate(c, 1) if v >= a.target), None)
    print(f"reaches {a.target:.2f}: " + ", ".join(f"{n} at epoch {first(c)}" for n, c in
                                                   curves.items())
          + f" (None: not within {a.epochs}){note}")


if __name__ == "__main__":
    main()
