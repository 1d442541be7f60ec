"""Lambda expressions: text, never code. Parsed with `ast` in eval mode and checked against a
whitelist (numbers, input names, arithmetic, comparisons, calls to listed math functions);
everything else (attributes, subscripts, comprehensions, lambdas, strings, keywords...) is
refused with the offending token named. Nothing is ever evaluated by Python: the checked tree
is compiled to OpenCL C, and differentiated symbolically for the backward pass. A float64 numpy
interpreter of the same tree serves the tests.

Keras' Lambda stored marshalled bytecode and so ran whatever a model file held
(CVE-2024-3660, CVE-2025-1550); this is the alternative."""
import ast
import math

import numpy as np

from layerloom.core.errors import ParamError, quote

MAX_LENGTH = 1000
MAX_NODES = 300
MAX_CONSTANT = 1e6
INPUT_NAMES = ("a", "b", "c", "d")  # ports 0..3; `x` means `a`
CONSTANTS = {"pi": math.pi, "e": math.e}
FUNCTIONS = {  # name -> arity
    "exp": 1, "log": 1, "sqrt": 1, "abs": 1, "sin": 1, "cos": 1, "tan": 1, "tanh": 1,
    "sigmoid": 1, "relu": 1, "softplus": 1, "square": 1, "erf": 1, "sign": 1,
    "maximum": 2, "minimum": 2, "pow": 2, "where": 3, "clip": 3,
}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


class ExprError(ParamError):
    pass


def _refuse(node, text, what):
    col = getattr(node, "col_offset", None)
    seg = ast.get_source_segment(text, node) if hasattr(node, "lineno") else None
    where = f" at column {col + 1}" if col is not None else ""
    token = f" {quote(seg)}" if seg else ""
    raise ExprError(f"{what}{token}{where} is not allowed in an expression; use numbers, the "
                    f"inputs ({', '.join(INPUT_NAMES)} or x), + - * / **, comparisons and "
                    f"{', '.join(sorted(FUNCTIONS))}")


def _check_text(text, place):
    """Refuse what is not expression text before Python's parser sees it."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("expected a non-empty expression such as x * sigmoid(x)", place)
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is longer than {MAX_LENGTH} characters", place)
    bad = next((i for i, ch in enumerate(text) if not ch.isascii() or
                (not ch.isprintable() and ch not in " \t")), None)
    if bad is not None:  # names and operators are ASCII; a lone surrogate cannot even encode
        raise ExprError(f"character {quote(text[bad])} at column {bad + 1} is not part of an "
                        "expression (letters, digits, operators and parentheses)", place)


def parse(text, place="expression"):
    """Check and convert to a tree of tuples: ('num', v) | ('var', name) | (op, *args)."""
    _check_text(text, place)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"syntax error at column {e.offset}: {e.msg}", place) from None
    text = text.strip()
    count = [0]

    def conv(node):
        count[0] += 1
        if count[0] > MAX_NODES:
            raise ExprError(f"expression has more than {MAX_NODES} parts", place)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                _refuse(node, text, "the constant")
            if not math.isfinite(v) or abs(v) > MAX_CONSTANT:
                raise ExprError(f"constant {quote(ast.get_source_segment(text, node))} is larger "
                                f"than {MAX_CONSTANT:g}", place)
            return ("num", float(v))
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return ("num", CONSTANTS[node.id])
            if node.id == "x":
                return ("var", "a")
            if node.id in INPUT_NAMES:
                return ("var", node.id)
            raise ExprError(f"unknown name {quote(node.id)} at column {node.col_offset + 1}; names "
                            f"are the inputs {', '.join(INPUT_NAMES)} (x is a), pi and e", place)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return (_BINOPS[type(node.op)], conv(node.left), conv(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = conv(node.operand)
            return ("neg", inner) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
            return (_CMPOPS[type(node.ops[0])], conv(node.left), conv(node.comparators[0]))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                _refuse(node.func, text, "the call of")
            if node.keywords:
                _refuse(node.keywords[0], text, "the keyword argument")
            name, arity = node.func.id, FUNCTIONS[node.func.id]
            if len(node.args) != arity:
                raise ExprError(f"{name}() takes {arity} argument{'s' * (arity > 1)}, got "
                                f"{len(node.args)}", place)
            return (name,) + tuple(conv(a) for a in node.args)
        _refuse(node, text, type(node).__name__)

    try:
        return conv(tree.body)
    except ExprError as e:
        if e.place is None:
            e.place = place
        raise


def variables(tree):
    if tree[0] == "var":
        return {tree[1]}
    if tree[0] == "num":
        return set()
    return set().union(*(variables(a) for a in tree[1:]))


# -- symbolic derivative --------------------------------------------------------------------
ZERO, ONE = ("num", 0.0), ("num", 1.0)


def _n(v):
    return ("num", float(v))


def _mul(u, v):
    if u == ZERO or v == ZERO:
        return ZERO
    if u == ONE:
        return v
    if v == ONE:
        return u
    return ("*", u, v)


def _add(u, v):
    if u == ZERO:
        return v
    if v == ZERO:
        return u
    return ("+", u, v)


def _sub(u, v):
    if v == ZERO:
        return u
    return ("-", u, v)


def _div(u, v):
    return ZERO if u == ZERO else ("/", u, v)


# d f(u) = _CHAIN_RULES[f](t, u, du), t being f(u) itself
_CHAIN_RULES = {
    "exp": lambda t, u, du: _mul(t, du),
    "log": lambda t, u, du: _div(du, u),
    "sqrt": lambda t, u, du: _div(du, ("*", _n(2), t)),
    "abs": lambda t, u, du: _mul(("sign", u), du),
    "sin": lambda t, u, du: _mul(("cos", u), du),
    "cos": lambda t, u, du: _mul(("neg", ("sin", u)), du),
    "tan": lambda t, u, du: _div(du, ("*", ("cos", u), ("cos", u))),
    "tanh": lambda t, u, du: _mul(("-", ONE, ("*", t, t)), du),
    "sigmoid": lambda t, u, du: _mul(("*", t, ("-", ONE, t)), du),
    "relu": lambda t, u, du: _mul((">", u, ZERO), du),
    "softplus": lambda t, u, du: _mul(("sigmoid", u), du),
    "square": lambda t, u, du: _mul(("*", _n(2), u), du),
    "erf": lambda t, u, du: _mul(("*", _n(2 / math.sqrt(math.pi)),
                                  ("exp", ("neg", ("*", u, u)))), du),
}


def derivative(t, wrt):
    """d t / d wrt as a tree."""
    op = t[0]
    if op == "num":
        return ZERO
    if op == "var":
        return ONE if t[1] == wrt else ZERO
    args = t[1:]
    d = [derivative(a, wrt) for a in args]
    u = args[0]
    du = d[0]
    if op == "+":
        return _add(du, d[1])
    if op == "-":
        return _sub(du, d[1])
    if op == "*":
        return _add(_mul(du, args[1]), _mul(u, d[1]))
    if op == "/":
        v, dv = args[1], d[1]
        return _sub(_div(du, v), _div(_mul(u, dv), ("*", v, v)))
    if op in ("**", "pow"):
        v, dv = args[1], d[1]
        if dv == ZERO:
            return _mul(_mul(v, ("**", u, _sub(v, ONE))), du)
        return _mul(t, _add(_mul(dv, ("log", u)), _div(_mul(v, du), u)))
    if op == "neg":
        return ZERO if du == ZERO else ("neg", du)
    if op in (">", ">=", "<", "<=", "==", "!=", "sign"):
        return ZERO
    if du == ZERO and op not in ("maximum", "minimum", "where", "clip"):
        return ZERO
    if op in _CHAIN_RULES:
        return _CHAIN_RULES[op](t, u, du)
    if op in ("maximum", "minimum"):
        v, dv = args[1], d[1]
        first = (">=", u, v) if op == "maximum" else ("<=", u, v)
        return _add(_mul(first, du), _mul(("-", ONE, first), dv))
    if op == "where":
        return ("where", args[0], d[1], d[2]) if (d[1], d[2]) != (ZERO, ZERO) else ZERO
    if op == "clip":
        inside = ("*", (">", u, args[1]), ("<", u, args[2]))
        return _mul(inside, du)
    raise ValueError(op)


# -- OpenCL C ---------------------------------------------------------------------------------
# OpenCL C for each operation, with {0}, {1}, {2} standing for the compiled arguments.
_C = {
    "+": "({0} + {1})", "-": "({0} - {1})", "*": "({0} * {1})", "/": "({0} / {1})",
    "**": "pow({0}, {1})", "pow": "pow({0}, {1})", "neg": "(-{0})",
    ">": "(({0} > {1}) ? 1.0f : 0.0f)", ">=": "(({0} >= {1}) ? 1.0f : 0.0f)",
    "<": "(({0} < {1}) ? 1.0f : 0.0f)", "<=": "(({0} <= {1}) ? 1.0f : 0.0f)",
    "==": "(({0} == {1}) ? 1.0f : 0.0f)", "!=": "(({0} != {1}) ? 1.0f : 0.0f)",
    "exp": "exp({0})", "log": "log({0})", "sqrt": "sqrt({0})", "abs": "fabs({0})",
    "sin": "sin({0})", "cos": "cos({0})", "tan": "tan({0})", "tanh": "tanh({0})",
    "erf": "erf({0})", "sign": "sign({0})",
    "sigmoid": "(1.0f / (1.0f + exp(-{0})))", "relu": "fmax({0}, 0.0f)",
    "softplus": "(fmax({0}, 0.0f) + log1p(exp(-fabs({0}))))", "square": "({0} * {0})",
    "maximum": "fmax({0}, {1})", "minimum": "fmin({0}, {1})",
    "where": "(({0}) != 0.0f ? ({1}) : ({2}))", "clip": "fmin(fmax({0}, {1}), {2})",
}


def to_c(t):
    op = t[0]
    if op == "num":
        return f"({t[1]!r}f)" if t[1] >= 0 else f"(-{-t[1]!r}f)"
    if op == "var":
        return t[1]
    return _C[op].format(*(to_c(x) for x in t[1:]))


# -- float64 numpy interpreter (tests) ---------------------------------------------------------
def evaluate(t, env):
    op = t[0]
    if op == "num":
        return t[1]
    if op == "var":
        return env[t[1]]
    a = [evaluate(x, env) for x in t[1:]]
    with np.errstate(all="ignore"):
        table = {
            "+": lambda: a[0] + a[1], "-": lambda: a[0] - a[1], "*": lambda: a[0] * a[1],
            "/": lambda: a[0] / a[1], "**": lambda: np.power(a[0], a[1]),
            "pow": lambda: np.power(a[0], a[1]), "neg": lambda: -a[0],
            ">": lambda: np.greater(a[0], a[1]) * 1.0, ">=": lambda: np.greater_equal(a[0], a[1]) * 1.0,
            "<": lambda: np.less(a[0], a[1]) * 1.0, "<=": lambda: np.less_equal(a[0], a[1]) * 1.0,
            "==": lambda: np.equal(a[0], a[1]) * 1.0, "!=": lambda: np.not_equal(a[0], a[1]) * 1.0,
            "exp": lambda: np.exp(a[0]), "log": lambda: np.log(a[0]), "sqrt": lambda: np.sqrt(a[0]),
            "abs": lambda: np.abs(a[0]), "sin": lambda: np.sin(a[0]), "cos": lambda: np.cos(a[0]),
            "tan": lambda: np.tan(a[0]), "tanh": lambda: np.tanh(a[0]),
            "sigmoid": lambda: 1 / (1 + np.exp(-a[0])), "relu": lambda: np.maximum(a[0], 0.0),
            "softplus": lambda: np.logaddexp(0.0, a[0]), "square": lambda: a[0] * a[0],
            "erf": lambda: np.vectorize(math.erf)(a[0]), "sign": lambda: np.sign(a[0]),
            "maximum": lambda: np.maximum(a[0], a[1]), "minimum": lambda: np.minimum(a[0], a[1]),
            "where": lambda: np.where(np.asarray(a[0]) != 0, a[1], a[2]),
            "clip": lambda: np.minimum(np.maximum(a[0], a[1]), a[2]),
        }
        return table[op]()
