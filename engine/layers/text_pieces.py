"""keras_hub's WordPiece text layers (issue 28): WordPieceTokenizer and StartEndPacker, with
keras_hub's names, parameters, defaults and outputs. Both are HOST layers, as the text layers of
layers/text.py: they run in numpy while the data is prepared and on a trained model's raw
inputs, never on the device.

WordPieceTokenizer splits a string as keras_hub's pretokenize does (accents stripped, split on
whitespace, control characters, punctuation and CJK characters, punctuation and CJK kept as
words, Unicode case folding), then each word into the longest pieces of its vocabulary, first
to last, the pieces after the first written with the suffix indicator ("##ing"); a word that
cannot be split, or longer than 100 bytes, is the OOV token. Its vocabulary is given, or
learned on the training rows (vocabulary null) by the WordPiece learner keras_hub's
compute_word_piece_vocabulary runs (tensorflow_text's wordpiece_tokenizer_learner_lib:
substring counts, a frequency threshold found by binary search for vocabulary_size, four
refinement passes), written here from its description: learn_vocabulary below.

StartEndPacker puts start and end ids around each sequence and pads or cuts it to
sequence_length. Layerloom's shapes are fixed, so what it reads is a padded sequence (a
WordPieceTokenizer's or TextVectorization's): its trailing 0s are that padding, taken off first,
as keras_hub's packer receives a tokenizer's ragged output."""
import collections
import unicodedata

import numpy as np

from layerloom.core.errors import ParamError, quote
from layerloom.core.params import Bool, Choice, Int, Param, Text
from layerloom.core.registry import KerasForm, ShapeError, register
from layerloom.layers.text import Vocabulary, _Lookup

MAX_BYTES_PER_WORD = 100  # keras_hub's (tf_text's FastWordpieceTokenizer): longer words -> OOV
RESERVED = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]  # compute_word_piece_vocabulary's


class TokenList(Param):
    """A list of strings (the reserved tokens a learned vocabulary starts with)."""
    kind = "tokenlist"

    def validate(self, value, place):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v
                                                           for v in value):
            raise ParamError(f"expected a list of non-empty strings, got {quote(value)}", place)
        if len(set(value)) != len(value):
            raise ParamError("a token is listed twice", place)
        return list(value)

    def describe(self):
        return "a list of strings"


class TokenIds(Param):
    """Token ids put at a sequence's start or end: null (none), an integer, or a list of them
    (keras_hub's start_value and end_value)."""
    kind = "tokenids"

    def validate(self, value, place):
        if value is None:
            return None
        ints = [value] if not isinstance(value, (list, tuple)) else list(value)
        if not ints or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                               for v in ints):
            raise ParamError(f"expected null, a token id (an integer >= 0) or a list of them, "
                             f"got {quote(value)}", place)
        return value if isinstance(value, int) else ints

    def describe(self):
        return "null, a token id or a list of token ids"


def ids_of(value):
    return [] if value is None else [value] if isinstance(value, int) else list(value)


# -- keras_hub's pretokenize (its Python path), character by character -----------------------
CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
       (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# tf_text's case_fold_utf8 drops Unicode's default ignorable code points
IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
             (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
             (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
             (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
             (0xE0000, 0xE0FFF))


def _in(c, ranges):
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in ranges)


def _is_punctuation(c):
    """BERT's punctuation: every ASCII character that is neither a letter, a digit, a space
    nor a control character, and Unicode's punctuation (P*)."""
    cp = ord(c)
    return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or
            unicodedata.category(c).startswith("P"))


def _is_space(c):
    """What splits and is dropped: ASCII space, tab, newlines, form feed, and control and
    format characters (Cc, Cf)."""
    return c in " \t\n\r\f" or unicodedata.category(c) in ("Cc", "Cf")


def casefold(text):
    """NFKC_Casefold (tf_text's case_fold_utf8): NFKC, full case folding, NFKC again, default
    ignorable code points dropped."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _in(c, IGNORABLE))


def pretokenize(text, p):
    """The words of one string, as keras_hub's pretokenize gives them."""
    text = str(text)
    if p["strip_accents"]:
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if unicodedata.category(c) != "Mn")
    if p["split"]:
        words, word = [], []
        for c in text:
            keep = _is_punctuation(c) or (p["split_on_cjk"] and _in(c, CJK))
            if keep or _is_space(c):
                if word:
                    words.append("".join(word))
                    word = []
                if keep:
                    words.append(c)
            else:
                word.append(c)
        if word:
            words.append("".join(word))
    else:
        words = [text] if text else []
    return [casefold(w) for w in words] if p["lowercase"] else words


def longest_first(word, vocab, suffix):
    """A word's split into the longest pieces of the vocabulary, first to last, the pieces
    after the first written with the suffix: [(piece, where it ends)], or None where some part
    of the word starts no piece."""
    out, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else suffix + word[start:end]
            if piece in vocab:
                out.append((piece, end))
                start = end
                break
        else:
            return None
    return out


def word_pieces(word, index, suffix, oov):
    """WordPiece on one word: its longest-first split; the OOV token for a word that cannot be
    split or is longer than 100 bytes."""
    if not word:
        return []
    split = None if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD else \
        longest_first(word, index, suffix)
    return [oov] if split is None else [piece for piece, _ in split]


def wordpiece_tokenizer(rows, p, vocab):
    """Texts (an object array, one string per row) -> (rows, sequence_length) float32 ids,
    padded with 0."""
    if p["oov_token"] not in vocab:
        raise ValueError(f"the vocabulary lacks the OOV token {p['oov_token']!r}")
    index = {t: i for i, t in enumerate(vocab)}
    texts = np.asarray(rows, object).reshape(-1).tolist()
    length = p["sequence_length"]
    out = np.zeros((len(texts), length), np.float32)
    for r, text in enumerate(texts):
        ids = [index[t] for w in pretokenize(text, p)
               for t in word_pieces(w, index, p["suffix_indicator"], p["oov_token"])][:length]
        out[r, :len(ids)] = ids
    return out


def start_end_packer(rows, p, vocab=None):
    """Padded id sequences (their trailing 0s the padding) -> (rows, sequence_length) float32:
    the start ids, the sequence cut to what fits, the end ids, then pad_value on
    padding_side."""
    a = np.asarray(rows)
    if a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0)):
        raise ValueError("StartEndPacker takes token ids (integers)")
    a = a.reshape(len(a), -1).astype(np.int64)
    start, end = ids_of(p["start_value"]), ids_of(p["end_value"])
    length = p["sequence_length"]
    keep = length - len(start) - len(end)
    out = np.full((len(a), length), 0 if p["pad_value"] is None else p["pad_value"], np.float32)
    for r, row in enumerate(a):
        nz = np.flatnonzero(row)
        seq = start + row[:nz[-1] + 1 if nz.size else 0][:keep].tolist() + end
        if p["padding_side"] == "right":
            out[r, :len(seq)] = seq
        else:
            out[r, length - len(seq):] = seq
    return out


SCRIPT_KINDS = ("WordPieceTokenizer", "StartEndPacker")


def script_source():
    """The tokenizer and the packer as plain Python for the PyTorch script's preprocess
    (interop/torch_code.host_source): these functions' own source, so both run the same code."""
    import inspect
    head = ["import unicodedata", f"MAX_BYTES_PER_WORD = {MAX_BYTES_PER_WORD}",
            f"CJK = {CJK!r}", f"IGNORABLE = {IGNORABLE!r}"]
    funcs = (ids_of, _in, _is_punctuation, _is_space, casefold, pretokenize, longest_first,
             word_pieces, wordpiece_tokenizer, start_end_packer)
    return "\n\n\n".join(["\n".join(head)] + [inspect.getsource(f).rstrip() for f in funcs] + [
        'HOST_FUNCTIONS = {"WordPieceTokenizer": wordpiece_tokenizer, '
        '"StartEndPacker": start_end_packer}']) + "\n"


# -- the WordPiece learner --------------------------------------------------------------------
def _counted_pieces(words, thresh, chars, suffix, passes, max_len):
    """One vocabulary for a frequency threshold: every piece (a word's prefix, or a later
    substring written with the suffix) counted over the words; the pieces at or above the
    threshold kept, longest first, each taking its count from its own prefixes so that a
    prefix only counts where it is not part of a kept longer piece. After the first pass the
    pieces start only where the last pass's vocabulary splits each word."""
    current = {}
    for c in chars:
        current.setdefault(c, 1)
        current.setdefault(suffix + c, 1)
    for it in range(passes):
        counts = [dict() for _ in range(max_len + 1)]
        for word, n in words:
            if it == 0:
                cuts = range(1, len(word) + 1)
            else:
                cuts = _cuts(word, current, suffix)
                if not cuts:
                    continue
            start = 0
            for cut in cuts:
                for end in range(start + 1, len(word) + 1):
                    piece = word[start:end] if start == 0 else suffix + word[start:end]
                    table = counts[end - start]
                    table[piece] = table.get(piece, 0) + n
                start = cut
        kept = {}
        for length in range(max_len, 0, -1):
            for piece, n in counts[length].items():
                if n >= thresh:
                    kept[piece] = n
                extra = len(suffix) if len(piece) > length else 0
                for i in range(1, length):  # the piece's own shorter prefixes
                    prefix = piece[:i + extra]
                    if prefix in counts[i]:
                        counts[i][prefix] -= n
        for c in chars:
            kept.setdefault(c, 1)
            kept.setdefault(suffix + c, 1)
        current = kept
    return current


def _cuts(word, vocab, suffix):
    """Where the vocabulary's longest-first split of a word ends each piece (None: it cannot
    be split)."""
    split = longest_first(word, vocab, suffix)
    return None if split is None else [end for _, end in split]


def _by_count(items):
    """Descending count, ties in code-point order of the token."""
    return [t for t, _ in sorted(sorted(items, key=lambda kv: kv[0]), key=lambda kv: kv[1],
                                 reverse=True)]


def learn_vocabulary(word_counts, size, reserved, suffix="##", lower=10, upper=10 ** 7,
                     passes=4, max_words=5 * 10 ** 6, max_len=50, max_chars=1000, slack=0.05):
    """A WordPiece vocabulary of at most `size` tokens from {word: count}: the reserved tokens,
    the single characters, then the learned pieces by descending count. The frequency
    threshold is searched between the smallest and largest word counts (bounded by lower and
    upper) until the vocabulary is within `slack` of `size` from below."""
    if not word_counts:
        return []
    counts = list(word_counts.items())
    hi = min(max(n for _, n in counts), upper)
    lo = max(min(n for _, n in counts), lower)
    words = [(w, n) for w, n in counts if len(w) <= max_len and w not in reserved]
    char_counts = collections.Counter()
    for w, n in words:
        for c in w:
            char_counts[c] += n
    allowed = set(_by_count(char_counts.items())[:max_chars])
    words = [(w, n) for w, n in sorted(words, key=lambda wn: wn[1], reverse=True)
             if all(c in allowed for c in w)][:max_words]
    chars = sorted({c for w, _ in words for c in w})
    while True:
        thresh = (lo + hi) // 2
        pieces = _counted_pieces(words, thresh, chars, suffix, passes, max_len)
        vocab = list(dict.fromkeys(list(reserved) + chars + _by_count(pieces.items())))
        near = len(vocab) <= size and size - len(vocab) <= max(slack * size, 0)
        if near or lo >= hi or thresh <= 1:
            return vocab[:size]
        if len(vocab) > size:
            lo = thresh + 1
        else:
            hi = thresh - 1


# -- the layers --------------------------------------------------------------------------------
def _wordpiece_params():
    return (
        Vocabulary("vocabulary", help="WordPiece tokens in index order (pieces after a word's "
                   "first written with the suffix indicator); null: learned on the training "
                   "rows."),
        Int("sequence_length", 32, min=1, help="Token ids per text: padded with 0 or cut (at "
            "the end). Layerloom's shapes are fixed, so it is required."),
        Int("vocabulary_size", 1000, min=2, help="The most tokens a learned vocabulary holds "
            "(the reserved ones included)."),
        TokenList("reserved_tokens", list(RESERVED), help="The tokens a learned vocabulary "
                  "starts with, in this order (index 0 is also the padding)."),
        Bool("lowercase", False, help="Unicode case folding before the split."),
        Bool("strip_accents", False, help="Accent marks removed before the split."),
        Bool("split", True, help="Split on whitespace and punctuation (kept as words); off: "
             "each text is one word."),
        Bool("split_on_cjk", True, help="Each CJK character is a word of its own."),
        Text("suffix_indicator", "##", help="What starts a piece that continues a word."),
        Text("oov_token", "[UNK]", help="The token of a word that cannot be split; it must be "
              "in the vocabulary."),
    )


def _wordpiece_keras(k, n):
    p = n.params
    args = [f"vocabulary={p['vocabulary']!r}", f"sequence_length={p['sequence_length']!r}"]
    args += [f"{name}={p[name]!r}" for name, default in (
        ("lowercase", False), ("strip_accents", False), ("split", True), ("split_on_cjk", True),
        ("suffix_indicator", "##"), ("oov_token", "[UNK]")) if p[name] != default]
    return ["import keras_hub  # keras_hub's tokenizer (in a model: TensorFlow Text)",
            f"{n.out[0]} = keras_hub.tokenizers.WordPieceTokenizer({', '.join(args)}, "
            f"name={n.id!r})({n.x[0]})"]


@register
class WordPieceTokenizer(_Lookup):
    type_id = "WordPieceTokenizer"
    help = ("Splits text into WordPiece token ids (keras_hub's WordPieceTokenizer): words split "
            "on spaces and punctuation, each into the longest pieces of a vocabulary given or "
            "learned on the training rows (##ing continues a word), padded with 0 to "
            "sequence_length. A host layer: right after a string Input of shape (1,).")
    params = _wordpiece_params()
    headline = ("vocabulary_size", "sequence_length")
    no_form = {"onnx": _Lookup.no_form["onnx"],
               "torch": "no torch module: the PyTorch script runs it before the model, in plain "
                        "Python (its preprocess function, with the vocabulary)"}
    keras_form = KerasForm("WordPieceTokenizer", write=_wordpiece_keras,
                           doc="keras_hub.tokenizers.WordPieceTokenizer with its vocabulary "
                               "(learned or given); needs keras_hub and TensorFlow Text")

    def specials(self, p):
        return []

    def output_shapes(self, p, in_shapes):
        if tuple(in_shapes[0]) != (1,):
            raise ShapeError(f"takes one string per sample, an Input of shape (1,); got "
                             f"{tuple(in_shapes[0])}")
        self.check_vocabulary(p)
        return [(p["sequence_length"],)]

    def check_vocabulary(self, p):
        vocab = p.get("vocabulary")
        if vocab and p["oov_token"] not in vocab:
            raise ShapeError(f"the vocabulary lacks the OOV token {quote(p['oov_token'])} "
                             "(oov_token): add it, or name one of its tokens")

    def tokens_of(self, p, rows):
        return [w for s in np.asarray(rows, object).reshape(-1).tolist()
                for w in pretokenize(s, p)]

    def adapt_host(self, p, rows):
        reserved = list(p["reserved_tokens"])
        if p["oov_token"] not in reserved:
            raise ValueError(f"the OOV token {p['oov_token']!r} is not among reserved_tokens "
                             f"{reserved}: a learned vocabulary would lack it")
        counts = collections.Counter(self.tokens_of(p, rows))
        return learn_vocabulary(counts, p["vocabulary_size"], reserved, p["suffix_indicator"])

    def full(self, p, vocab):
        return list(vocab)

    def apply_host(self, p, rows, vocab):
        return wordpiece_tokenizer(rows, p, vocab)


def _packer_keras(k, n):
    p = n.params
    args = [f"sequence_length={p['sequence_length']!r}"]
    args += [f"{name}={p[name]!r}" for name in ("start_value", "end_value", "pad_value")
             if p[name] is not None]
    if p["padding_side"] != "right":
        args.append(f"padding_side={p['padding_side']!r}")
    return ["import keras_hub",
            f"{n.out[0]} = keras_hub.layers.StartEndPacker({', '.join(args)}, "
            f"name={n.id!r})({n.x[0]})"]


def _packer_keras_in(o, shapes):
    if o.get("return_padding_mask"):
        raise ParamError("StartEndPacker: return_padding_mask (a second output) is not read")
    out = {"sequence_length": o.get("sequence_length"), "padding_side":
           o.get("padding_side", "right")}
    for name in ("start_value", "end_value", "pad_value"):
        v = o.get(name)
        if isinstance(v, str) or (isinstance(v, list) and any(isinstance(t, str) for t in v)):
            raise ParamError(f"StartEndPacker: {name} {v!r} is a string token; Layerloom's "
                             "packer reads token ids")
        out[name] = v
    return out


@register
class StartEndPacker(_Lookup):
    type_id = "StartEndPacker"
    help = ("Puts start and end token ids around each sequence and pads or cuts it to "
            "sequence_length (keras_hub's StartEndPacker); its input's trailing 0s (a "
            "tokenizer's padding) are taken off first. A host layer: after a tokenizer.")
    params = (
        Int("sequence_length", 32, min=1, help="Ids per sequence after packing."),
        TokenIds("start_value", None, help="Id(s) put first; null: none."),
        TokenIds("end_value", None, help="Id(s) put last (after the cut); null: none."),
        Int("pad_value", None, min=0, help="The id that pads; null: 0."),
        Choice("padding_side", "right", ("right", "left"), help="Which side is padded."),
    )
    headline = ("sequence_length",)
    input_dtype = "int"
    adapts = False  # no vocabulary: nothing learned on the training rows
    keras_form = KerasForm("StartEndPacker", write=_packer_keras, read=_packer_keras_in,
                           doc="keras_hub.layers.StartEndPacker")

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 1:
            raise ShapeError(f"takes a sequence of token ids per sample, shape (length,); got "
                             f"{tuple(in_shapes[0])}")
        if len(ids_of(p["start_value"])) + len(ids_of(p["end_value"])) > p["sequence_length"]:
            raise ShapeError(f"the start and end ids alone are longer than sequence_length "
                             f"{p['sequence_length']}")
        return [(p["sequence_length"],)]

    def apply_host(self, p, rows, vocab):
        return start_end_packer(rows, p, vocab)

    def reference(self, p, xs, ws, training=False):
        return [self.apply_host(p, xs[0], [])]
