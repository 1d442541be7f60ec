"""Built-in synthetic datasets in the spirit of TensorFlow Playground: spirals, moons, circles,
xor, blobs, sine and a two-output set, generated from a seed."""

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core.params import Float, Int, validate_params
from layerloom.core.sections import Group, Option
from layerloom.data.arrays import Arrays
from layerloom.data.preprocess import apply_split
from layerloom.data.sources import Source, register


def _split_rng(seed):
    return np.random.default_rng([seed & 0xFFFFFFFF, 1]), np.random.default_rng([seed & 0xFFFFFFFF, 2])


def _spirals(rng, n, noise):
    k = rng.integers(0, 2, n)
    r = rng.uniform(0.05, 1.0, n)
    t = 1.75 * r * 2 * np.pi + np.pi * k
    x = np.stack([r * np.sin(t), r * np.cos(t)], 1) + rng.normal(0, noise, (n, 2))
    return {"x": x, "y": k}


def _moons(rng, n, noise):
    k = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    x = np.where(k[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    return {"x": x + rng.normal(0, noise, (n, 2)), "y": k}


def _circles(rng, n, noise):
    k = rng.integers(0, 2, n)
    r = np.where(k == 0, rng.uniform(0, 0.5, n), rng.uniform(0.7, 1.0, n))
    t = rng.uniform(0, 2 * np.pi, n)
    return {"x": np.stack([r * np.cos(t), r * np.sin(t)], 1) + rng.normal(0, noise, (n, 2)),
            "y": k}


def _xor(rng, n, noise):
    x = rng.uniform(-1, 1, (n, 2))
    k = (x[:, 0] * x[:, 1] > 0).astype(int)
    return {"x": x + rng.normal(0, noise, (n, 2)), "y": k}


def _blobs(rng, n, noise, classes=3):
    centers = np.random.default_rng(classes).uniform(-1, 1, (classes, 2)) * 2
    k = rng.integers(0, classes, n)
    return {"x": centers[k] + rng.normal(0, 0.2 + noise, (n, 2)), "y": k}


def _sine(rng, n, noise):
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    return {"x": x, "y": np.sin(x) + rng.normal(0, noise, (n, 1))}


def _multitask(rng, n, noise):
    """Two inputs, two targets: a point and three features; a class (point inside a circle?)
    and a value that depends on both inputs."""
    x1 = rng.uniform(-1, 1, (n, 2))
    x2 = rng.uniform(-1, 1, (n, 3))
    cls = (np.hypot(x1[:, 0], x1[:, 1]) < 0.65).astype(int)
    val = np.sin(np.pi * x2[:, :1]) + x2[:, 1:2] * x2[:, 2:3] + 0.5 * x1[:, :1]
    return {"point": x1, "features": x2 + rng.normal(0, noise, (n, 3)),
            "inside": cls, "value": val}


SYNTHETIC = {
    "spirals": (_spirals, "two interleaved spirals, 2 classes", 2),
    "moons": (_moons, "two interleaving half circles, 2 classes", 2),
    "circles": (_circles, "a disc inside a ring, 2 classes", 2),
    "xor": (_xor, "points classed by the sign of x*y, 2 classes", 2),
    "blobs": (_blobs, "gaussian blobs, `classes` classes", None),
    "sine": (_sine, "y = sin(x) + noise, regression", None),
    "multitask": (_multitask, "inputs point (2) and features (3); targets inside (2 classes) "
                  "and value (regression)", None),
}
SYNTHETIC_PARAMS = (
    Int("samples", 1000, min=1, max=10_000_000, help="Training samples."),
    Int("test_samples", 500, min=0, max=10_000_000, help="Test samples (another stream)."),
    Float("noise", 0.1, min=0.0, help="Standard deviation of added gaussian noise."),
    Int("seed", 0, min=0, help="Generator seed."),
    Int("classes", 3, min=2, max=1000, help="Number of classes (blobs only)."),
)


def synthetic(name, place="dataset", **params):
    if name not in SYNTHETIC:
        raise DataError(f"unknown synthetic dataset {quote(name)}; expected one of "
                        f"{', '.join(SYNTHETIC)}", f"{place}.name")
    values, problems = validate_params(SYNTHETIC_PARAMS, params, f"{place}.params")
    if problems:
        raise problems[0]
    fn, desc, classes = SYNTHETIC[name]
    extra = {"classes": values["classes"]} if name == "blobs" else {}
    r_train, r_test = _split_rng(values["seed"])

    def make(rng, n):
        out = fn(rng, n, values["noise"], **extra)
        return {k: np.asarray(v, np.float32) for k, v in out.items()}
    test = make(r_test, values["test_samples"]) if values["test_samples"] else None
    return Arrays(make(r_train, values["samples"]), test, desc,
                  classes or extra.get("classes"))


def _load(d, project, progress=None, table=None):
    return apply_split(synthetic(d["name"], **d.get("params", {})), d)


def _array_names(d, project):
    if d.get("name") not in SYNTHETIC:
        return []
    return sorted(synthetic(d["name"], samples=2, test_samples=0).train)


register(Source(
    "synthetic", "A generated set in the spirit of TensorFlow Playground, from a seed.",
    keys=(Option("name", None, tuple(SYNTHETIC), unknown="synthetic dataset",
                 help="Which set."),
          Group("params", SYNTHETIC_PARAMS, nearest=False, help="Sizes, noise and seed.")),
    load=_load, array_names=_array_names, brings_test_split=True,
    editor="named", choices=tuple(SYNTHETIC)))

