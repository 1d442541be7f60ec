"""The Lambda expression checker: every escape attempt is refused with the token named, and
nothing is ever evaluated by Python."""
import json
import os
import subprocess
import sys

import pytest

from layerloom.core.expr import ExprError, parse

ESCAPES = {
    "__import__('os').system('touch /tmp/layerloom_pwned')": "the call of \"__import__('os')",
    "x.__class__": "Attribute 'x.__class__'",
    "x.__class__.__bases__[0].__subclasses__()": "the call of",
    "().__class__": "Attribute",
    "[c for c in ()]": "ListComp",
    "(lambda: 1)()": "the call of 'lambda: 1'",
    "lambda: 0": "Lambda",
    "x[0]": "Subscript 'x[0]'",
    "open('/etc/passwd')": "the call of 'open'",
    "eval('1')": "the call of 'eval'",
    "exec('1')": "the call of 'exec'",
    "getattr(x, 'real')": "the call of 'getattr'",
    "globals()": "the call of 'globals'",
    "'text'": "the constant \"'text'\"",
    "b'bytes'": "the constant",
    "True": "the constant 'True'",
    "9 ** 9 ** 9 ** 99999999": "larger than",
    "x ** 1e308": "larger than",
    "1e999": "larger than",
    "exp(x, y=1)": "the keyword argument",
    "{1: 2}": "Dict",
    "x if x > 0 else 0": "IfExp",
    "(x := 3)": "NamedExpr",
    "f'{x}'": "JoinedStr",
    "sigmoid(x).real": "Attribute",
    "exp": "unknown name 'exp'",
    "foo(x)": "the call of 'foo'",
    "os": "unknown name 'os'",
    "__builtins__": "unknown name '__builtins__'",
    "x +": "syntax error",
    "x; import os": "syntax error",
    "1 < x < 2": "Compare",
    "not x": "UnaryOp",
    "x and 1": "BoolOp",
    "x @ x": "BinOp",
    "x" + " + x" * 400: "longer than 1000 characters",
    "+".join(["x"] * 400): "more than 300 parts",
    "exp()": "exp() takes 1 argument",
}


@pytest.mark.parametrize("text", sorted(ESCAPES))
def test_escape_attempts_are_refused_with_the_token(text):
    with pytest.raises(ExprError) as e:
        parse(text, "graph.nodes[1].params.expression")
    msg = str(e.value)
    assert msg.startswith("graph.nodes[1].params.expression: ")
    assert ESCAPES[text] in msg
    assert not os.path.exists("/tmp/layerloom_pwned")


def test_allowed_forms():
    for text in ["x * sigmoid(x)", "a - b", "maximum(x, 0.1 * x)", "-x + +x", "pi * e",
                 "where(a >= 0, a, 0.01 * a)", "clip(x, -1, 1) ** 2", "pow(2, x) / 3"]:
        parse(text)


def test_hostile_project_is_refused_through_the_cli(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "assets", "examples", "sine.loom")) as f:
        d = json.load(f)
    d["graph"]["nodes"].insert(1, {"id": "evil", "type": "Lambda", "params": {
        "expression": "__import__('os').system('touch /tmp/layerloom_pwned')"}})
    d["graph"]["edges"][0] = {"from": ["x", 0], "to": ["evil", 0]}
    d["graph"]["edges"].append({"from": ["evil", 0], "to": ["hidden_1", 0]})
    (tmp_path / "evil.loom").write_text(json.dumps(d))
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", str(tmp_path / "evil.loom"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "graph.nodes[1].params.expression: the call of \"__import__('os')" in r.stderr
    assert not os.path.exists("/tmp/layerloom_pwned") and not (tmp_path / "o").exists()


def test_lambda_names_must_match_inputs():
    from layerloom.core.graph import Graph
    g = Graph()
    g.add_node("Input", {"shape": [3]}, id="in")
    g.add_node("Lambda", {"expression": "a * b"}, id="lam")
    g.connect("in", 0, "lam", 0)
    msgs = [str(p) for p in g.validate()]
    assert any("the expression uses 'b' but this Lambda has 1 input (a)" in m for m in msgs)


def test_lambda_trains_inside_a_graph(rt):
    """A swish Lambda between Dense layers learns the sine example."""
    from layerloom.project import loom as projectfile
    from layerloom.train.session import Session
    from layerloom.data.prepare import prepare_data
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "assets", "examples", "sine.loom")) as f:
        d = json.load(f)
    d["graph"]["nodes"][1]["params"]["activation"] = "linear"
    d["graph"]["nodes"].insert(2, {"id": "swish", "type": "Lambda",
                                   "params": {"expression": "x * sigmoid(x)"}})
    d["graph"]["edges"][1] = {"from": ["hidden_1", 0], "to": ["swish", 0]}
    d["graph"]["edges"].append({"from": ["swish", 0], "to": ["hidden_2", 0]})
    d["training"]["epochs"] = 8
    proj = projectfile.loads(json.dumps(d))
    h = Session(proj, runtime=rt).fit(prepare_data(proj))
    assert h["test"]["loss"] < 0.02


def test_every_accepted_operation_compiles_and_differentiates():
    from layerloom.core import expr
    ops = (set(expr.FUNCTIONS) | set(expr._BINOPS.values()) | set(expr._CMPOPS.values())
           | {"neg"})
    assert ops <= set(expr._C)
    for op in ops:
        arity = expr.FUNCTIONS.get(op, 1 if op == "neg" else 2)
        tree = (op,) + tuple(("var", v) for v in "abc"[:arity])
        assert expr.to_c(tree) and expr.to_c(expr.derivative(tree, "a"))
