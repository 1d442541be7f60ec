"""ONNX in: the activations that exporters write out as formulas, matched before the importer's
walk (find_activations, a method of _ActivationFormulas, a base of onnx_ops_in._OperatorReads):
GELU's erf and tanh forms (before opset 20) and SiLU."""
import math

import numpy as np

from layerloom.core.activations import GELU_TANH_C, GELU_TANH_K


class _ActivationFormulas:
    """The importer's reading of activations written out as their formula."""

    # -- activations written out as their formula (GELU before opset 20, SiLU) ---------------
    def find_activations(self):
        """{the output of an activation written out as its formula's last node: (activation,
        x, whether only the formula reads x)}, the formula's other nodes' outputs added to
        self.absorbed: GELU, x * 0.5 * (1 + erf(x / sqrt 2)), and its tanh form,
        0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), the factors in any order; SiLU,
        x * sigmoid(x); each where nothing outside reads the steps between."""
        found = {}
        for n in self.model.graph.node:
            if n.op_type not in ("Erf", "Tanh") or n.output[0] in self.folded:
                continue
            inner = self.erf_argument(n) if n.op_type == "Erf" else self.tanh_argument(n)
            if inner is None:
                continue
            x, steps = inner
            a = self.reader(n.output[0])
            if a is None or a.op_type != "Add" or not self.scalar_operand(a, n.output[0], 1.0):
                continue
            steps += [n, a]
            last = self.times_half_x(a.output[0], x, steps)
            if last is None:
                continue
            outside = [r for r in self.readers.get(x, []) if all(r is not s for s in steps)]
            found[last.output[0]] = ("gelu" if n.op_type == "Erf" else "gelu_tanh", x,
                                     not outside and x not in self.graph_outputs)
            self.absorbed.update(s.output[0] for s in steps if s is not last)
        for n in self.model.graph.node:  # x * sigmoid(x): torch's SiLU, EfficientNet's swish
            m = self.reader(n.output[0]) if n.op_type == "Sigmoid" else None
            if m is None or m.op_type != "Mul" or sorted(m.input) != sorted(
                    [n.input[0], n.output[0]]) or n.output[0] in self.absorbed:
                continue
            x = n.input[0]
            outside = [r for r in self.readers.get(x, []) if r is not n and r is not m]
            found[m.output[0]] = ("silu", x, not outside and x not in self.graph_outputs)
            self.absorbed.add(n.output[0])
        return found

    def reader(self, name):
        """The one node that reads tensor `name` (not a graph output), else None."""
        users = self.users(name)
        return users[0] if len(users) == 1 and self.uses.get(name) == 1 and \
            name not in self.graph_outputs else None

    def producer(self, name):
        return self.producers.get(name)

    def scalar(self, name):
        c = self.consts.get(name)
        if c is None or np.size(c) != 1 or c.dtype == object:
            return None
        return float(np.reshape(c, -1)[0])

    def scalar_operand(self, node, operand, value):
        """node's other input than `operand` is the constant `value` (float32 close)."""
        others = [i for i in node.input if i != operand]
        c = self.scalar(others[0]) if len(others) == 1 else None
        return c is not None and abs(c - value) <= 1e-6 * max(abs(value), 1.0)

    def erf_argument(self, erf):
        """(x, [its steps]) where erf's input is x / sqrt 2 or x * (1 / sqrt 2)."""
        d = self.producer(erf.input[0])
        if d is None or self.reader(d.output[0]) is not erf or d.op_type not in ("Div", "Mul"):
            return None
        for x in d.input:
            if x not in self.consts and (
                    (d.op_type == "Div" and list(d.input) == [x, d.input[1]] and
                     self.scalar_operand(d, x, math.sqrt(2.0))) or
                    (d.op_type == "Mul" and self.scalar_operand(d, x, math.sqrt(0.5)))):
                return x, [d]
        return None

    def tanh_argument(self, tanh):
        """(x, [its steps]) where tanh's input is sqrt(2 / pi) (x + 0.044715 x^3), the cube
        as Pow(x, 3) or x * x * x."""
        p = self.producer(tanh.input[0])
        if p is None or p.op_type != "Mul" or self.reader(p.output[0]) is not tanh:
            return None
        s = next((self.producer(i) for i in p.input if self.scalar_operand(p, i, GELU_TANH_C)),
                 None)
        if s is None or s.op_type != "Add" or self.reader(s.output[0]) is not p:
            return None
        for x in s.input:
            q = self.producer(next((i for i in s.input if i != x), ""))
            if x in self.consts or q is None or q.op_type != "Mul" or \
                    self.reader(q.output[0]) is not s:
                continue
            cube = next((self.producer(i) for i in q.input
                         if self.scalar_operand(q, i, GELU_TANH_K)), None)
            steps = self.cube_steps(cube, x)
            if steps is not None:
                return x, [p, s, q] + steps
        return None

    def cube_steps(self, cube, x):
        """The nodes computing x^3 (Pow(x, 3), or x * x * x), read by nothing else; or None."""
        if cube is None or self.reader(cube.output[0]) is None:
            return None
        if cube.op_type == "Pow" and cube.input[0] == x and self.scalar_operand(cube, x, 3.0):
            return [cube]
        if cube.op_type == "Mul" and x in cube.input:
            other = cube.input[1] if cube.input[0] == x else cube.input[0]
            sq = self.producer(other)
            if sq is not None and sq.op_type == "Mul" and list(sq.input) == [x, x] and \
                    self.reader(sq.output[0]) is cube:
                return [cube, sq]
        return None

    def times_half_x(self, name, x, steps):
        """The last of the Muls that multiply `name` by x and by 0.5 (or by x * 0.5), in any
        order, each step read only by the next, appended to steps; None if they are not."""
        need, last = {"x", "half"}, None
        while need:
            m = self.reader(name)
            if m is None or m.op_type != "Mul":
                return None
            o = m.input[1] if m.input[0] == name else m.input[0]
            half_x = self.producer(o)
            if o == x and "x" in need:
                need.discard("x")
            elif "half" in need and self.scalar_operand(m, name, 0.5):
                need.discard("half")
            elif need == {"x", "half"} and half_x is not None and half_x.op_type == "Mul" and \
                    x in half_x.input and self.scalar_operand(half_x, x, 0.5) and \
                    self.reader(o) is m:
                need.clear()
                steps.append(half_x)
            else:
                return None
            steps.append(m)
            name, last = m.output[0], m
        return last
