"""A layer typed as Keras takes it (the canvas' Tab box, the palette's search): its name, then
its arguments in Keras' positional order, the order its declaration lists its parameters in
(engine/layers/*.py), and name=value for any parameter:

    embedding 10000 32                  input_dim, output_dim
    input 200                           shape (200,); also 28 28 1, (28, 28, 1) or 28x28x1
    conv2d 16 3x3 relu padding=same
    conv2d 16 3 same relu               a word that does not fit the next parameter goes to
                                        the first one not yet given that takes it
    Dense(64, activation="relu")        as a Keras call

Pure functions, no Qt: the editor and the tests call them alike."""
import json
import re

from layerloom.core.errors import LayerloomError, ParamError

_NONE = ("none", "null")
_BOOL = {"true": True, "false": False}
_CALL = re.compile(r"\s*(?:(?:keras\.)?layers\.)?([A-Za-z_]\w*)\((.*)\)\s*", re.S)
_NAMED = re.compile(r"([A-Za-z_]\w*)=(.*)", re.S)
_SHOWN_REASONS = 3  # of the parameters a refused word was tried on


def split_words(text):
    """The words of a typed layer: split at spaces and commas outside brackets, `name = value`
    kept as one word, `Dense(64, activation="relu")` read as `Dense 64 activation="relu"`.
    Raises ParamError for unbalanced brackets."""
    call = _CALL.fullmatch(text)
    if call:  # the name right before "(": a call; "input (28, 28, 1)" is a name and a shape
        words = [call.group(1)] + _split(call.group(2), text)
    else:
        words = _split(text, text)
    if words:
        words[0] = re.sub(r"^(?:keras\.)?layers\.", "", words[0])
    return words


def split_chain(text):
    """The layers of an entry that types several, separated by ";" or a new line outside
    brackets and quotes, each stripped; empty ones left out. A quote opens only where a value
    starts (after a space, "=", "(", "[" or ","; an apostrophe inside a word is a letter) and
    a backslash inside quotes escapes the next character."""
    parts, part, depth, quote, escaped = [], "", 0, None, False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'" and (not part or part[-1] in " \t=([,"):
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0 and ch in ";\n":
            parts.append(part)
            part = ""
            continue
        part += ch
    parts.append(part)
    return [p.strip() for p in parts if p.strip()]


def _split(body, text):
    body = re.sub(r"\s*=\s*", "=", body)
    words, word, depth = [], "", 0
    for ch in body:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                break
        if depth == 0 and (ch.isspace() or ch == ","):
            if word:
                words.append(word)
            word = ""
            continue
        word += ch
    if depth != 0:
        raise ParamError(f"unbalanced brackets in {text.strip()!r}")
    return words + ([word] if word else [])


def value_of(word):
    """A typed word as a value: 'same' or "same" -> 'same', true/false, none/null -> None,
    3x3 -> [3, 3], (3, 3) or [3, 3] -> [3, 3], ((1, 1), (2, 2)) nested, 64 -> 64,
    1e-3 -> 0.001; what is none of these comes back as the text."""
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1]
    low = word.lower()
    if low in _BOOL:
        return _BOOL[low]
    if low in _NONE:
        return None
    if word[:1] in "([":
        as_json = re.sub(r",\s*\]", "]", word.replace("(", "[").replace(")", "]"))
        try:
            return json.loads(as_json)
        except json.JSONDecodeError:
            return word  # a parameter that reads text (a shape) still may
    parts = low.split("x")
    if len(parts) > 1 and all(p.lstrip("-").isdigit() for p in parts):  # 3x3, -1x2
        return [int(p) for p in parts]
    for cast in (int, float):
        try:
            return cast(word)
        except ValueError:
            pass
    return word


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _tries(param, value):
    """The readings of a value a parameter is offered, in turn: as typed; 1x0x2x1 as pairs
    (margins); an integer as a one-axis shape (input 200); a word in lower case (SAME)."""
    out = [value]
    if isinstance(value, list) and len(value) >= 4 and len(value) % 2 == 0:
        out.append([value[i:i + 2] for i in range(0, len(value), 2)])
    if param.kind == "shape" and _is_int(value):
        out.append([value])
    if isinstance(value, str) and value.lower() != value:
        out.append(value.lower())
    return out


def _offer(param, value):
    """(the value `param` takes, None) or (None, why it takes none of its readings)."""
    why = ""
    for v in _tries(param, value):
        try:
            return param.validate(v, param.name), None
        except LayerloomError as e:
            why = e.message
    return None, why


def parse_words(layer, words):
    """{parameter: value} from the words typed after a layer's name: name=value for the
    parameter named; each other word, in turn, to the first parameter in the declaration's
    (Keras') order not yet given that takes it. Raises ParamError saying which word no
    parameter takes and why."""
    declared = {q.name: q for q in layer.params}
    named, positional = {}, []
    for word in words:
        m = _NAMED.fullmatch(word)
        if m is None:
            positional.append(word)
            continue
        name, raw = m.groups()
        if name not in declared:
            raise ParamError(f"{layer.type_id} has no parameter {name!r}; it has "
                             + (", ".join(declared) or "none"))
        if not raw:
            raise ParamError(f"{name}= has no value")
        if name in named:
            raise ParamError(f"{name} is given twice")
        value, why = _offer(declared[name], value_of(raw))
        if why is not None:
            raise ParamError(f"{name}={raw}: {why}")
        named[name] = value
    out, shape = {}, None  # shape: the shape parameter the last word set, to go on with
    for word in positional:
        value = value_of(word)
        reasons = []
        if shape is not None and _is_int(value):  # input 28 28 1: one shape, as (28, 28, 1)
            got, why = _offer(declared[shape], [*out[shape], value])
            if why is None:
                out[shape] = got
                continue
        for name, q in declared.items():
            if name in out or name in named:
                continue
            got, why = _offer(q, value)
            if why is None:
                out[name] = got
                shape = name if q.kind == "shape" and _is_int(value) else None
                break
            reasons.append(f"{name}: {why}")
        else:
            again = [n for n in named if _offer(declared[n], value)[1] is None]
            if again:
                raise ParamError(f"{again[0]} is given twice ({word} and "
                                 f"{again[0]}={named[again[0]]!r})")
            raise ParamError(_refused(layer, word, reasons, declared))
    return {**out, **named}


def _refused(layer, word, reasons, declared):
    if not declared:
        return f"{layer.type_id} takes no {word!r}: it has no parameters"
    said = "; ".join(reasons[:_SHOWN_REASONS]) + ("; ..." if len(reasons) > _SHOWN_REASONS
                                                  else "")
    left = f" ({said})" if said else " (every parameter is given already)"
    return (f"{layer.type_id} takes no {word!r} here{left}; or write name=value for one of "
            + ", ".join(declared))

