"""A Lambda's formula as Python source for another framework's tensor functions: one walk of
the expression tree (core/expr.py), each framework giving its spelling as a Dialect. Subtrees
of numbers alone are folded to one number; an operation the dialect lacks is a DataError
naming the node."""
from dataclasses import dataclass
from typing import Callable

from layerloom.core import expr
from layerloom.core.errors import DataError, quote


@dataclass(frozen=True)
class Dialect:
    name: str                                 # "keras.ops", "torch": in the refusal
    unary: dict                               # op -> function: "exp" -> "ops.exp"
    binary: dict                              # op -> function of two: "+" -> "ops.add"
    compare: Callable[[str, str, str], str]   # (op, a, b) -> source of a 0/1 float tensor
    where: str                                # format of {c}, {a}, {b}: c != 0 ? a : b
    clip: str                                 # format of {x}, {lo}, {hi}
    number: Callable[[float], str] = repr     # a folded constant


COMPARISONS = (">", ">=", "<", "<=", "==", "!=")


def source(tree, env, dialect, nid="lambda"):
    """Python source computing `tree`; env maps the input names (a, b, c, d) to tensor
    names."""
    def emit(t):
        op = t[0]
        if op == "var":
            return env[t[1]]
        if not expr.variables(t):
            return dialect.number(float(expr.evaluate(t, {})))
        args = [emit(a) for a in t[1:]]
        if op in dialect.unary:
            return f"{dialect.unary[op]}({args[0]})"
        if op in dialect.binary:
            return f"{dialect.binary[op]}({args[0]}, {args[1]})"
        if op in COMPARISONS:
            return dialect.compare(op, *args)
        if op == "where":
            return dialect.where.format(c=args[0], a=args[1], b=args[2])
        if op == "clip":
            return dialect.clip.format(x=args[0], lo=args[1], hi=args[2])
        raise DataError(f"Lambda layer {quote(nid)}: the expression's {quote(op)} has no "
                        f"{dialect.name} form", f"graph.nodes.{nid}.params.expression")
    return emit(tree)
