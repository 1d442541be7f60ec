"""Markdown reference generated from the registry: `python -m layerloom.core.docs` prints the layer
table docs/layers.md carries between its `layers:begin/end` markers (a test keeps them equal)."""
import json

from layerloom.core.registry import Variadic, layer_types


def _param(p):
    return f"`{p.name}` ({p.describe()}; default `{json.dumps(p.to_json(p.default))}`)"


def _inputs(l):
    if isinstance(l.inputs, Variadic):
        return f"{l.inputs.min} or more"
    if not l.inputs:
        return "0"
    names = ", ".join(l.inputs)
    least = l.min_inputs()
    count = str(len(l.inputs)) if least == len(l.inputs) else f"{least} to {len(l.inputs)}"
    return count if len(l.inputs) == 1 else f"{count} ({names})"


def _interop(l):
    """The layer's declared forms: ONNX out (and the operators read back as it), Keras (its
    class, and others read as it), PyTorch; or why it has none."""
    out = []
    if l.onnx_form is not None:
        reads = sorted(l.onnx_form.reads)
        out.append(f"ONNX: {l.onnx_form.ops}" + (f"; read from {', '.join(reads)}"
                                                   if reads else ""))
    k = l.keras_form
    if k is not None:
        classes = ([k.cls] if k.cls else []) + sorted(k.also)
        out.append("Keras: " + ", ".join(f"`{c}`" for c in classes)
                   + ("" if k.cls else " (read only)"))
    if l.torch_form is not None:
        out.append("PyTorch: code")
    out += [f"no {fmt}: {why}" for fmt, why in sorted(l.no_form.items())]
    return "<br>".join(out) or "none"


def layer_table():
    rows = ["| layer | category | inputs | parameters | what it does | interop |",
            "| --- | --- | --- | --- | --- | --- |"]
    for l in layer_types():
        params = "<br>".join(_param(p) for p in l.params) or "none"
        rows.append(f"| `{l.type_id}` | {l.category} | {_inputs(l)} | {params} | {l.help} | "
                    f"{_interop(l)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(layer_table(), end="")
