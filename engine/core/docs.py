"""Markdown reference generated from the registry: `python -m layerloom.core.docs` prints the layer
table docs/layers.md carries between its `layers:begin/end` markers (a test keeps them equal)."""
import json

from layerloom.core.registry import Variadic, layer_types


def _param(p):
    return f"`{p.name}` ({p.describe()}; default `{json.dumps(p.to_json(p.default))}`)"


def layer_table():
    rows = ["| layer | category | inputs | parameters | what it does |",
            "| --- | --- | --- | --- | --- |"]
    for l in layer_types():
        ins = (f"{l.inputs.min} or more" if isinstance(l.inputs, Variadic)
               else str(len(l.inputs)))
        params = "<br>".join(_param(p) for p in l.params) or "none"
        rows.append(f"| `{l.type_id}` | {l.category} | {ins} | {params} | {l.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(layer_table(), end="")
