"""The text and lookup layers (StringLookup, IntegerLookup, TextVectorization), Keras' names,
parameters, defaults and vocabulary order. They are HOST layers (`host = True`): they take
strings or integers, which the device's float32 tensors cannot hold, so they run in numpy
while the data is prepared (data/hostrun.py) and on a trained model's raw inputs, directly
after an Input (or another host layer), never on the device; the device model starts from
their numeric outputs, whose shapes their output_shapes give (core/host.py).

Before the first epoch each adapts to the training rows as Keras' adapt does (tokens by
descending count, ties by descending token, as Keras' lexsort reversed), unless its
`vocabulary` parameter gives one; the adapted vocabulary is kept in the project's
dataset.fitted.vocabulary by node id (as the Normalization statistics of the dataset are), and
--predict applies it to raw text. Keras export writes the real Keras layers with that
vocabulary; ONNX export and the PyTorch code refuse them by name."""
import collections
import re

import numpy as np

from layerloom.core.errors import ParamError, quote
from layerloom.core.params import Choice, Int, Param
from layerloom.core.registry import KerasForm, Layer, register, ShapeError

# Keras' lower_and_strip_punctuation: ASCII lower case (tf.strings.lower), then this set removed
PUNCTUATION = re.compile(r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']')
WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
HOST_ONLY = ("a host preprocessing layer (strings or integers in, indices out) that runs in "
             "numpy before the device model")


class Vocabulary(Param):
    """A vocabulary given as a list of tokens (strings, or integers for IntegerLookup), or
    null: adapted to the training rows."""
    kind = "vocabulary"

    def __init__(self, name, integers=False, help=""):
        super().__init__(name, None, help)
        self.integers = integers

    def validate(self, value, place):
        if value is None:
            return None
        want = "integers" if self.integers else "strings"
        ok = isinstance(value, (list, tuple)) and all(
            (isinstance(v, int) and not isinstance(v, bool)) if self.integers
            else isinstance(v, str) for v in value)
        if not ok:
            raise ParamError(f"expected null (adapted) or a list of {want}, got {quote(value)}",
                             place)
        if not value:
            raise ParamError("the vocabulary is empty: give tokens, or null to adapt it to the "
                             "training rows", place)
        if len(set(value)) != len(value):
            dup = next(v for v in value if list(value).count(v) > 1)
            raise ParamError(f"the vocabulary holds {quote(dup)} twice", place)
        return list(value)

    def describe(self):
        return "null (adapted) or a list of " + ("integers" if self.integers else "strings")


class Token(Param):
    """A special token (Keras' mask_token, oov_token): a string, or null for none (the
    inspector edits it as JSON: "[UNK]" or null)."""
    kind = "token"

    def __init__(self, name, default, integers=False, help=""):
        super().__init__(name, default, help)
        self.integers = integers

    def validate(self, value, place):
        if value is None:
            return None
        if self.integers and isinstance(value, int) and not isinstance(value, bool):
            return value
        if not self.integers and isinstance(value, str):
            return value
        raise ParamError(f"expected {'an integer' if self.integers else 'a string'} or null, "
                         f"got {quote(value)}", place)

    def describe(self):
        return ("an integer" if self.integers else "a string") + " or null"


def adapted_order(tokens, max_learned=None):
    """Keras' adapt order: by descending count, ties by descending token (np.lexsort on
    (tokens, counts), reversed), at most max_learned of them."""
    counts = collections.Counter(tokens)
    key = (lambda t: (counts[t], t.encode("utf-8"))) if all(
        isinstance(t, str) for t in counts) else (lambda t: (counts[t], t))
    out = sorted(counts, key=key, reverse=True)
    return out[:max_learned] if max_learned else out


class _Lookup(Layer):
    """What the host layers share: the special tokens before the vocabulary, the index of
    each token, and the Layer methods a device layer has (a host layer never runs there)."""
    category = "Preprocessing"
    host = True
    differentiable = False
    input_dtype = "string"  # what its Input must feed: "string" or "int"
    adapts = True  # it has a vocabulary, given or adapted to the training rows
    no_form = {"onnx": HOST_ONLY + "; ONNX has no such layer: export a model without it",
               "torch": "no torch module: the PyTorch script runs it before the model, in plain "
                        "Python (its preprocess function, with the vocabulary)"}

    def specials(self, p):
        """The tokens before the vocabulary, in Keras' order: the mask token, then the OOV
        token(s)."""
        out = [] if p.get("mask_token") is None else [p["mask_token"]]
        return out + [p["oov_token"]] * p.get("num_oov_indices", 1)

    def tokens_of(self, p, rows):
        """The tokens of the rows (a flat list) that adapt counts."""
        return [v for v in np.asarray(rows, object).reshape(-1).tolist()]

    def adapt_host(self, p, rows):
        """Keras' adapt on the training rows: the learned vocabulary (specials excluded)."""
        toks = [t for t in self.tokens_of(p, rows) if t not in self.specials(p)]
        learned = None if p.get("max_tokens") is None else \
            max(0, p["max_tokens"] - len(set(self.specials(p))))
        return adapted_order(toks, learned)

    def full(self, p, vocab):
        """The whole index: the specials then the vocabulary (Keras' get_vocabulary())."""
        return list(dict.fromkeys(self.specials(p))) + [t for t in vocab]

    def lookup(self, p, vocab, tokens):
        """Indices of an object array of tokens: OOV (one OOV index: 1 after a mask, else 0)
        for unknown ones, the mask token's 0."""
        index = {t: i for i, t in enumerate(self.full(p, vocab))}
        oov = 0 if p.get("mask_token") is None else 1
        flat = [index.get(t, oov) for t in np.asarray(tokens, object).reshape(-1).tolist()]
        return np.asarray(flat, np.int64).reshape(np.shape(tokens))

    def check_vocabulary(self, p):
        """A given vocabulary fits max_tokens with the special tokens (Keras refuses it)."""
        if p.get("vocabulary") and p.get("max_tokens") is not None and \
                len(self.full(p, p["vocabulary"])) > p["max_tokens"]:
            raise ShapeError(f"the vocabulary holds {len(self.full(p, p['vocabulary']))} tokens "
                             f"with the special ones, more than max_tokens {p['max_tokens']}")

    def forward(self, ops, s):
        raise RuntimeError(f"{self.type_id} is a host layer: it runs in numpy, not on the "
                           "device (core/host.py)")

    backward = forward

    def reference(self, p, xs, ws, training=False):
        return [self.apply_host(p, xs[0], p.get("vocabulary"))]


def _keras_fixed(o, **more):
    """A Keras text layer's options Layerloom takes as Keras' defaults (read, so that
    Options.finish refuses nothing else): utf-8, no idf weights, dense int output."""
    for key, ok in {"encoding": ("utf-8",), "pad_to_max_tokens": (False,), "sparse": (False,),
                    "ragged": (False,), "invert": (False,), "idf_weights": (None,), **more}.items():
        v = o.get(key)
        if v is not None and v not in ok:
            raise ParamError(f"option {key}={v!r} has no Layerloom form")
    o.get("vocabulary_size")  # what the vocabulary gives


def _given_vocabulary(vocab, kind):
    """A Keras text layer whose config holds no vocabulary was adapted in Keras (the vocabulary
    is then in the .keras archive's assets, which are not read): refused, saying how to keep
    it, rather than imported to adapt a new vocabulary under the trained embedding."""
    if not vocab:
        raise ParamError(f"{kind} has no vocabulary in its config (adapted in Keras, it is in "
                         "the archive's assets, which are not read): build the layer with "
                         "vocabulary=layer.get_vocabulary() before saving")


def _lookup_keras(cls):
    def write(k, n):
        p = n.params
        args = [f"vocabulary={p['vocabulary']!r}"]
        for name, default in (("max_tokens", None), ("num_oov_indices", 1),
                              ("mask_token", None), ("oov_token", cls.OOV)):
            if p.get(name) != default:
                args.append(f"{name}={p[name]!r}")
        return [f"{n.out[0]} = layers.{cls.type_id}({', '.join(args)}, name={n.id!r})"
                f"({n.x[0]})"]

    def read(o, shapes):
        _keras_fixed(o, vocabulary_dtype=("string", "int64", "int32"))
        _given_vocabulary(o.get("vocabulary"), cls.type_id)
        return {name: o.get(name, q.default) for name in
                ("max_tokens", "num_oov_indices", "mask_token", "oov_token", "vocabulary")
                for q in cls.params if q.name == name}
    return KerasForm(cls.type_id, write=write, read=read,
                     doc="the Keras layer with its vocabulary (adapted or given)")


class _TokenLookup(_Lookup):
    """StringLookup and IntegerLookup: a token per value, the same shape out."""
    headline = ("max_tokens",)
    OOV = "[UNK]"

    def output_shapes(self, p, in_shapes):
        if p["output_mode"] != "int":
            raise ShapeError(f"output_mode {quote(p['output_mode'])} is not supported; int is")
        self.check_vocabulary(p)
        return [tuple(in_shapes[0])]

    def apply_host(self, p, rows, vocab):
        return self.lookup(p, vocab, self.values(rows)).astype(np.float32)

    def values(self, rows):
        return np.asarray(rows, object)


def _lookup_params(integers):
    return (Int("max_tokens", None, min=1, help="The most tokens the vocabulary holds, the "
                "special ones included; null: no limit."),
            Int("num_oov_indices", 1, min=1, max=1, help="Indices for out-of-vocabulary "
                "tokens (1, as Keras' default)."),
            Token("mask_token", None, integers, help="A token that maps to 0 (none: null)."),
            Token("oov_token", -1 if integers else "[UNK]", integers,
                  help="The out-of-vocabulary token."),
            Vocabulary("vocabulary", integers, help="Tokens in index order (after the special "
                       "ones); null: adapted to the training rows."),
            Choice("output_mode", "int", ("int",), help="int: one index per token."))


@register
class StringLookup(_TokenLookup):
    type_id = "StringLookup"
    help = ("Maps strings to integer indices from a vocabulary (Keras' StringLookup): adapted to "
            "the training rows (by descending frequency) or given; unknown strings get the OOV "
            "index. A host layer: it runs before the device model, right after a string Input.")
    params = _lookup_params(False)


@register
class IntegerLookup(_TokenLookup):
    type_id = "IntegerLookup"
    help = ("Maps integers to indices from a vocabulary (Keras' IntegerLookup): adapted to the "
            "training rows (by descending frequency) or given; unknown values get the OOV "
            "index. A host layer: it runs before the device model, right after an Input.")
    params = _lookup_params(True)
    input_dtype = "int"
    OOV = -1

    def values(self, rows):
        a = np.asarray(rows)
        if a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0):
            raise ValueError("IntegerLookup takes integers; the rows hold fractions")
        return a.astype(np.int64).astype(object)

    def tokens_of(self, p, rows):
        return self.values(rows).reshape(-1).tolist()


@register
class TextVectorization(_Lookup):
    type_id = "TextVectorization"
    help = ("Turns strings into sequences of token indices (Keras' TextVectorization): "
            "standardized (lower case, punctuation removed), split on whitespace, looked up in a "
            "vocabulary adapted to the training rows or given (0: padding, 1: [UNK]), padded or "
            "cut to output_sequence_length. A host layer: it runs before the device model, right "
            "after a string Input of shape (1,).")
    params = (
        Int("max_tokens", None, min=3, help="The most tokens the vocabulary holds, padding and "
            "[UNK] included; null: no limit."),
        Choice("standardize", "lower_and_strip_punctuation",
               ("lower_and_strip_punctuation", "lower", "strip_punctuation", "none"),
               help="What is done to the text before it is split."),
        Choice("split", "whitespace", ("whitespace", "character", "none"),
               help="How the text becomes tokens."),
        Choice("output_mode", "int", ("int",), help="int: a sequence of token indices."),
        Int("output_sequence_length", 16, min=1, help="Sequences are padded with 0 or cut to "
            "this length (at the end, as Keras)."),
        Vocabulary("vocabulary", help="Tokens in index order (after padding and [UNK]); null: "
                   "adapted to the training rows."),
    )
    headline = ("max_tokens", "output_sequence_length")

    def specials(self, p):
        return ["", "[UNK]"]

    def output_shapes(self, p, in_shapes):
        if tuple(in_shapes[0]) != (1,):
            raise ShapeError(f"takes one string per sample, an Input of shape (1,); got "
                             f"{tuple(in_shapes[0])}")
        self.check_vocabulary(p)
        return [(p["output_sequence_length"],)]

    @staticmethod
    def split_text(p, text):
        text = str(text)
        if p["standardize"] in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(_LOWER)
        if p["standardize"] in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = PUNCTUATION.sub("", text)
        if p["split"] == "whitespace":
            return [t for t in WHITESPACE.split(text) if t]
        if p["split"] == "character":
            return list(text)
        return [text]

    def tokens_of(self, p, rows):
        return [t for s in np.asarray(rows, object).reshape(-1).tolist()
                for t in self.split_text(p, s)]

    def apply_host(self, p, rows, vocab):
        texts = np.asarray(rows, object).reshape(-1).tolist()
        length = p["output_sequence_length"]
        out = np.zeros((len(texts), length), np.float32)
        index = {t: i for i, t in enumerate(self.full(p, vocab))}
        for r, s in enumerate(texts):
            ids = [index.get(t, 1) for t in self.split_text(p, s)][:length]
            out[r, :len(ids)] = ids
        return out

    def _keras_write(k, n):
        p = n.params
        args = [f"max_tokens={p['max_tokens']!r}", f"standardize={p['standardize']!r}"
                if p["standardize"] != "none" else "standardize=None",
                f"split={p['split']!r}" if p["split"] != "none" else "split=None",
                "output_mode='int'", f"output_sequence_length={p['output_sequence_length']!r}",
                f"vocabulary={p['vocabulary']!r}"]
        return [f"{n.out[0]} = layers.TextVectorization({', '.join(args)}, name={n.id!r})"
                f"({n.x[0]})"]

    def _keras_read(o, shapes):
        _keras_fixed(o)
        std, split = o.get("standardize", "lower_and_strip_punctuation"), o.get("split",
                                                                                "whitespace")
        if o.get("output_mode", "int") != "int" or o.get("ngrams") or \
                not isinstance(std, (str, type(None))) or not isinstance(split, (str, type(None))):
            raise ParamError("TextVectorization: only output_mode int without ngrams and "
                             "the built-in standardize and split are read")
        vocab = o.get("vocabulary")
        if isinstance(vocab, list):  # Keras' get_vocabulary() starts with "" and [UNK]
            vocab = [t for t in vocab if t not in ("", "[UNK]")] or None
        _given_vocabulary(vocab, "TextVectorization")
        if not o.get("output_sequence_length"):
            raise ParamError("output_sequence_length None pads each batch to its longest "
                             "text: Layerloom's shapes are fixed; set output_sequence_length")
        return {"max_tokens": o.get("max_tokens"), "standardize": std or "none",
                "split": split or "none", "output_mode": "int",
                "output_sequence_length": o.get("output_sequence_length"),
                "vocabulary": vocab}

    keras_form = KerasForm("TextVectorization", write=_keras_write, read=_keras_read,
                           doc="the Keras layer with its vocabulary (adapted or given)")


StringLookup.keras_form = _lookup_keras(StringLookup)
IntegerLookup.keras_form = _lookup_keras(IntegerLookup)
