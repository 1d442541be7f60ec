"""How many keras.io example programs (Keras 3) use only layers Layerloom has (issue 28).

    python -m bench.keras_io_coverage [--data bench/keras_io_examples.json]
        [--json bench/results/keras_io_coverage.json] [--have-file FILE] [--quiet]

Reads the examples' layer lists from bench/keras_io_examples.json (how they were collected is
in its "collected" header) and the Keras classes Layerloom builds: every registered type id
(Layerloom's type ids are Keras' class names) and every Keras class its Keras import reads
(interop/keras_in_layers.CONVERTERS: a layer's KerasForm cls and `also`). --have-file takes that
set from a file instead (one class a line; to measure an older tree). Prints

- how many examples use only layers Layerloom has, counted two ways: the built-in layers they
  use (Keras layers, keras_hub/keras_cv layers and models, and the layers of the
  keras.applications models they build, listed in the data) all present; and the same while
  also defining no Layer subclass of their own (nor a Model subclass whose call() is its own
  computation); a third line leaves out the classes an example uses only to prepare its data
  outside the model (tokenizers, lookups: "pipeline_only" in the data);
- the missing layers ranked by how many examples they block (and for how many they are the
  only thing missing);
- per example what is missing;

and writes the same as JSON. Input, InputLayer, Model, Sequential and Layer are not counted as
layers. Keras' spellings are folded to one class (MaxPool2D is MaxPooling2D, layers.add is Add,
layers.experimental.preprocessing.X is X).
"""
import argparse
import json
import os
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "bench", "keras_io_examples.json")
RESULTS = os.path.join(ROOT, "bench", "results", "keras_io_coverage.json")

# not layers of a model: the graph itself
NOT_LAYERS = {"Input", "InputLayer", "Model", "Sequential", "Layer", "Functional"}
# Keras' other names for one class
ALIASES = {
    "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "MaxPool3D": "MaxPooling3D",
    "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D",
    "AvgPool3D": "AveragePooling3D",
    "GlobalMaxPool1D": "GlobalMaxPooling1D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalMaxPool3D": "GlobalMaxPooling3D", "GlobalAvgPool1D": "GlobalAveragePooling1D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalAvgPool3D": "GlobalAveragePooling3D",
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "Convolution2DTranspose": "Conv2DTranspose", "SeparableConvolution2D": "SeparableConv2D",
    # the functional forms, layers.add(...) and so on
    "add": "Add", "subtract": "Subtract", "multiply": "Multiply", "average": "Average",
    "maximum": "Maximum", "minimum": "Minimum", "concatenate": "Concatenate", "dot": "Dot",
}


def canonical(name):
    """One spelling of a layer class: the last dotted part (keras.layers.X,
    layers.experimental.preprocessing.X, keras_hub.layers.X), its alias folded."""
    short = name.rsplit(".", 1)[-1]
    return ALIASES.get(short, short)


def layerloom_classes():
    """The Keras classes Layerloom builds: its type ids, the classes its Keras import reads,
    and the bundled blocks named as keras_hub's layers they are built as (TransformerEncoder,
    TransformerDecoder, FNetEncoder: keras_hub's parameters and order,
    assets/examples/blocks/)."""
    from layerloom.core.registry import layer_types
    from layerloom.interop.keras_in_layers import CONVERTERS
    from layerloom.project import block_library
    entries, _ = block_library.library()
    bundled = {name for name, e in entries.items() if e.bundled}
    return {l.type_id for l in layer_types()} | set(CONVERTERS) | (bundled & KERAS_HUB_BLOCKS)


# bundled blocks that are keras_hub layers (the same computation, parameters and defaults; the
# transformer encoder is checked against torch's TransformerEncoderLayer, the FNet encoder
# against keras_hub's own FNetEncoder, in tests/test_block_library.py)
KERAS_HUB_BLOCKS = {"TransformerEncoder", "TransformerDecoder", "FNetEncoder"}


def needed(example, applications):
    """The classes (canonical) an example needs built in: its Keras layers, its
    keras_hub/keras_cv/TF-Hub classes and the layers of the keras.applications models it
    builds (an application the data does not list is needed whole, as applications:<name>)."""
    names = example.get("layers", []) + example.get("keras_hub", [])
    for app in example.get("applications", []):
        names = names + applications.get(app, [f"applications:{app}"])
    return {c for c in map(canonical, names) if c not in NOT_LAYERS}


def measure(data, have):
    """The counts and lists for `data` (the examples JSON) given the classes `have`."""
    applications = data.get("application_layers", {})
    have = {canonical(h) for h in have}
    rows = []
    blocks, only = Counter(), Counter()
    for ex in data["examples"]:
        missing = sorted(c for c in needed(ex, applications) if c not in have)
        pipeline = {canonical(c) for c in ex.get("pipeline_only", [])}
        custom = list(ex.get("custom", [])) + list(ex.get("custom_models", []))
        rows.append({"path": ex["path"], "title": ex.get("title", ""), "missing": missing,
                     "custom": custom, "builtin_ok": not missing,
                     "model_ok": not [m for m in missing if m not in pipeline],
                     "strict_ok": not missing and not custom})
        for m in missing:
            blocks[m] += 1
            only[m] += len(missing) == 1
    ranked = [{"layer": k, "blocks": n, "only_missing": only[k]}
              for k, n in sorted(blocks.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"examples": len(rows),
            "builtin_ok": sum(r["builtin_ok"] for r in rows),
            "model_ok": sum(r["model_ok"] for r in rows),
            "strict_ok": sum(r["strict_ok"] for r in rows),
            "with_custom_layers": sum(bool(r["custom"]) for r in rows),
            "missing_ranked": ranked, "per_example": rows}


def report(result, out=None, quiet=False):
    t = result["examples"]
    w = (out or sys.stdout).write
    w(f"keras.io Keras 3 examples: {t}\n")
    w(f"  use only built-in layers Layerloom has:        {result['builtin_ok']:4d} / {t}\n")
    w(f"  ... and define no Layer subclass of their own: {result['strict_ok']:4d} / {t}\n")
    w(f"  (not counting layers used only to prepare data: {result['model_ok']:3d} / {t})\n")
    w(f"  (examples defining their own Layer subclasses: {result['with_custom_layers']})\n\n")
    w("missing layers, by the examples they block (only: the example's one missing layer)\n")
    for r in result["missing_ranked"]:
        w(f"  {r['blocks']:4d}  only {r['only_missing']:3d}  {r['layer']}\n")
    if quiet:
        return
    w("\nper example\n")
    for r in result["per_example"]:
        mark = "ok " if r["strict_ok"] else ("ok*" if r["builtin_ok"] else "-- ")
        extra = f"  custom: {', '.join(r['custom'])}" if r["custom"] else ""
        w(f"  {mark} {r['path']}: {', '.join(r['missing']) or 'nothing missing'}{extra}\n")
    w("\nok: buildable; ok*: its built-in layers are all there but it defines its own Layer "
      "subclasses; --: missing layers\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DATA)
    p.add_argument("--json", default=RESULTS, help="where to write the results ('' for none)")
    p.add_argument("--have-file", help="the classes Layerloom has, one a line, instead of "
                                       "the registry's")
    p.add_argument("--quiet", action="store_true", help="no per-example list")
    a = p.parse_args(argv)
    with open(a.data) as f:
        data = json.load(f)
    if a.have_file:
        with open(a.have_file) as f:
            have = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    else:
        have = layerloom_classes()
    result = measure(data, have)
    result["layerloom_classes"] = sorted(have)
    report(result, quiet=a.quiet)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {a.json}")
    return result


if __name__ == "__main__":
    main()
