"""What a data source does to its arrays before the model sees them, besides the normalisation
fitted in training: Keras' image sets add a channel axis and divide 0..255 pixels by 255, an
image folder decodes its files at one size and colour. A source declares it (Source.form), and
it is applied on one code path to the rows training reads (prepare.prepare_data) and to the
samples a user gives a trained model (prepare.prepare_inputs: --predict, the Python API, the
editor's Predict), and folded into the exports' input normalisation: a trained model takes its
data raw, as the dataset holds it, whichever way it comes."""
from dataclasses import dataclass

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core.graph import fmt_shape
from layerloom.data import preprocess


@dataclass(frozen=True)
class ImageForm:
    """Images of `size` (height, width) with `channels` (1 grayscale, 3 RGB), their 0..255
    pixels divided by `divide` (Keras' image sets, `scale` on: 255; an image folder: 1, its
    normalisation scales them)."""
    size: tuple
    channels: int
    divide: float = 1.0

    @property
    def color(self):
        return "grayscale" if self.channels == 1 else "rgb"

    @property
    def shape(self):
        return tuple(self.size) + (self.channels,)

    def describe(self):
        h, w = self.size
        axes = f"(N, {h}, {w})" + (f" or (N, {h}, {w}, 1)" if self.channels == 1 else
                                   f" or (N, {h}, {w}, {self.channels})")
        return (f"{h}x{w} {self.color} images, {axes}, pixels 0..255 as the dataset holds "
                "them")

    def apply(self, a, what, place, divide=True, check_range=False):
        """Raw rows `a` (an array or LazyRows) in the model's form: the channel axis added where
        a grayscale set's rows lack it, the pixels divided. Rows of another shape are returned
        as they are for the caller's shape check to name. check_range: refuse float pixels that
        look already scaled to 0..1 (they would be divided again: a silently wrong answer)."""
        a = preprocess.as_rows(a)
        if self.channels == 1 and not isinstance(a, preprocess.LazyRows) and \
                tuple(a.shape[1:]) == tuple(self.size):
            a = a[..., None]
        if not divide or self.divide == 1:
            return a
        if check_range and not isinstance(a, preprocess.LazyRows):
            _check_not_scaled(a, what, place, self.divide)
        d = np.float32(self.divide)
        if isinstance(a, preprocess.LazyRows):
            return a.with_transform(preprocess.chain(a.transform, lambda r: r / d))
        return np.asarray(a, np.float32) / d


def _check_not_scaled(a, what, place, divide):
    if a.dtype.kind != "f" or not a.size:
        return
    top = float(np.nanmax(a))
    if 0 < top <= 1.0:
        raise DataError(f"{what} holds pixel values in 0..1 (largest {top:g}), already scaled; "
                        f"the model takes pixels as the dataset holds them, 0..{divide:g}, "
                        "and scales them itself", place)


def forms(project):
    """{array name: ImageForm} of the project's dataset, as its source declares ({} for a
    source without one, or none)."""
    from layerloom.data import sources
    d = project.dataset or {}
    s = sources.get(d.get("source"))
    return dict(s.form(d)) if s is not None and s.form is not None else {}


def input_form(project, nid):
    """The ImageForm of the array mapped to Input `nid`, or None."""
    name = array_of(project, nid)
    return forms(project).get(name)


def array_of(project, nid):
    """The name of the array that Input `nid` reads ("x" for a lone unmapped Input)."""
    d = project.dataset or {}
    mapping = dict(d.get("inputs") or {})
    ins = project.graph.inputs()
    if not mapping and len(ins) == 1:
        return "x"
    return mapping.get(nid, nid)


def source_words(project):
    """What the model was trained on, for messages: 'a CSV table', 'arrays from an .npz file'."""
    d = project.dataset or {}
    return {"csv": "a CSV table", "npz": "arrays from an .npz file",
            "npy": "arrays from .npy files", "synthetic": "a synthetic set"}.get(
        d.get("source"), f"{quote(d.get('source'))} data" if d.get("source") else
        "arrays (it has no dataset)")


def fold(stats, form):
    """Normalisation statistics that take the raw pixels: the form's division folded into
    (x - shift) * scale, for the exports (their models take what predict takes)."""
    if form is None or form.divide == 1:
        return stats
    d = float(form.divide)
    if stats is None:
        return {"kind": "scale", "shift": [0.0], "scale": [1.0 / d]}
    return {**stats, "shift": [float(s) * d for s in stats["shift"]],
            "scale": [float(c) / d for c in stats["scale"]]}


def shape_hint(form, want):
    """How a trained model's Input takes its samples, for a refusal."""
    return form.describe() if form is not None else f"samples shaped {fmt_shape(want)}"
