"""Kernel argument types, read from the kernels' own OpenCL C signatures: the one place they are
written. pyopencl needs the numpy type of every scalar argument (None for a buffer) before a
launch; this reads them from the source a program is built from, so a call site passes only the
values, and a signature changed in a .cl file changes what the engine passes.

The parser knows the subset of C the kernels use: `__kernel [__attribute__((...))] void
name(params)`, parameter lists that use object-like macros (GEMM_PARAMS) and kernels defined by a
function-like macro and instantiated at the top level (COL_SUMS(col_sums, 1, float)). A scalar of
a type it does not know is an error when the kernel is looked up, not a wrong value on the device.
(The drivers could say the types too, with -cl-kernel-arg-info, but Intel's runtime does not for a
program pyopencl loads from its binary cache.)"""
import re

import numpy as np

SCALAR_TYPES = {"int": np.int32, "uint": np.uint32, "unsigned int": np.uint32,
                "float": np.float32}
_QUALIFIERS = {"const", "restrict", "volatile", "__private", "private"}
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(\([^)]*\))?[ \t]*(.*)$", re.M)
_KERNEL = re.compile(r"__kernel\s+(?:__attribute__\s*\(\(.*?\)\)\s*)?void\s+(\w+)\s*\(", re.S)


class SignatureError(ValueError):
    """A kernel signature the engine cannot pass arguments to."""


def _clean(src):
    """Source without comments and with continued lines joined."""
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    return src.replace("\\\n", " ")


def _balanced(text, start):
    """The text between the '(' before `start` and its matching ')', and the index after it."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i], i + 1
    raise SignatureError(f"unbalanced parentheses after {text[max(0, start - 40):start]!r}")


def _substitute(text, names):
    """`text` with each whole-word name in `names` replaced by its value."""
    if not names:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    return pattern.sub(lambda m: names[m.group(1)], text)


def _instantiations(src, function_macros):
    """The text of every top-level use of a function-like macro whose body defines a kernel."""
    out = []
    for name, (params, body) in function_macros.items():
        for m in re.finditer(r"^[ \t]*" + name + r"\s*\(", src, re.M):
            args, _ = _balanced(src, m.end())
            values = [a.strip() for a in args.split(",")]
            if len(values) != len(params):
                raise SignatureError(f"{name} takes {len(params)} arguments, given {args!r}")
            out.append(_substitute(body, dict(zip(params, values))))
    return out


def _scalar_type(kernel, param):
    if "*" in param:
        return None  # a buffer (global, constant or local memory)
    words = [w for w in re.findall(r"\w+", param) if w not in _QUALIFIERS]
    ctype = " ".join(words[:-1])  # the last word is the parameter's name
    if ctype not in SCALAR_TYPES:
        raise SignatureError(f"kernel {kernel}: argument {param.strip()!r} is of a type the "
                             f"engine does not pass (it knows {', '.join(SCALAR_TYPES)})")
    return SCALAR_TYPES[ctype]


def parse(src):
    """{kernel name: [numpy scalar type, or None for a buffer, per argument]} of OpenCL C
    source text."""
    src = _clean(src)
    objects, functions = {}, {}
    for name, params, body in _DEFINE.findall(src):
        if params:
            if "__kernel" in body:
                functions[name] = ([p.strip() for p in params[1:-1].split(",")], body)
        else:
            objects[name] = body.strip()
    body = _DEFINE.sub("", src)
    kernels = {}
    for text in [body] + _instantiations(body, functions):
        for m in _KERNEL.finditer(text):
            params, _ = _balanced(text, m.end())
            for _ in range(8):  # object-like macros in the list (nested a few deep)
                expanded = _substitute(params, objects)
                if expanded == params:
                    break
                params = expanded
            params = [p for p in params.split(",") if p.strip() and p.strip() != "void"]
            kernels[m.group(1)] = [_scalar_type(m.group(1), p) for p in params]
    return kernels
