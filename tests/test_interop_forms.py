"""Every layer's interop is declared beside it (issue 28, item 1): its ONNX, PyTorch and Keras
forms (core/registry.py OnnxForm, TorchForm, KerasForm) are attributes of its declaration, and
the interop modules only collect them. The checks here find every mapping from the
declarations: each registered layer declares each form or says by name why it has none, and
each interop table is exactly what the declarations give (no table of its own left to forget).
What each form computes is checked by test_onnx_export, test_torch_code, test_keras_export and
test_keras_import, which run every layer's examples through them."""
import pytest

from layerloom.core.registry import FORMATS, KerasForm, OnnxForm, TorchForm, declared, layer_types
from layerloom.interop import keras_in_layers, keras_out_layers, onnx_layers, torch_layers

LAYERS = [l for l in layer_types() if not l.is_input]  # an Input is the graph's input itself
KINDS = {"onnx": OnnxForm, "torch": TorchForm, "keras": KerasForm}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_layer_declares_each_form_or_says_why_not(fmt):
    missing = []
    for layer in LAYERS:
        form = getattr(layer, FORMATS[fmt])
        if form is None:
            if not str(layer.no_form.get(fmt, "")).strip():
                missing.append(layer.type_id)
        else:
            assert isinstance(form, KINDS[fmt]), (layer.type_id, fmt, form)
    assert not missing, f"layers with no {fmt} form and no reason in no_form: {missing}"


def test_every_keras_form_is_read_back_or_says_why_not():
    for layer in LAYERS:
        form = layer.keras_form
        if form is not None and form.cls is None:
            assert str(layer.no_form.get("keras_in", "")).strip(), layer.type_id


def test_the_interop_tables_are_the_declarations():
    for fmt, table in (("onnx", onnx_layers.CONVERTERS), ("torch", torch_layers.CONVERTERS),
                       ("keras", keras_out_layers.CONVERTERS)):
        assert set(table) == set(declared(fmt)), fmt
    assert set(onnx_layers.LAYER_OPS) == set(declared("onnx"))
    assert all(onnx_layers.LAYER_OPS.values())
    # the layers whose PyTorch code writes their extra outputs (states, attention scores)
    assert {"SimpleRNN", "LSTM", "GRU", "MultiHeadAttention"} <= torch_layers.STATE_PORTS


def test_every_declared_keras_class_imports_as_its_layer():
    want = {}
    for type_id, form in declared("keras").items():
        for cls in ([form.cls] if form.cls else []) + list(form.also):
            assert cls not in want, f"Keras class {cls} is declared by {want[cls]} and {type_id}"
            want[cls] = type_id
    assert set(keras_in_layers.CONVERTERS) == set(want)
    # the short Keras aliases are read as their layer
    assert want["MaxPool2D"] == "MaxPooling2D" and want["ReLU"] == "ReLU"


def test_the_layer_modules_declare_forms_without_importing_interop():
    """layers/ is below interop/ (test_layers_of_imports): a form holds names, maps and plain
    functions, which interop calls with its builder or kit."""
    for layer in LAYERS:
        for attr in FORMATS.values():
            form = getattr(layer, attr)
            for f in (getattr(form, "convert", None), getattr(form, "write", None),
                      getattr(form, "read", None)):
                if f is not None:
                    assert f.__module__.startswith("layerloom.layers."), (layer.type_id, f)


def test_the_onnx_operators_a_layer_reads_are_the_importers():
    """ONNX in, where declared (OnnxForm.reads; the other layers' operators still op_* methods
    of interop/onnx_ops_in.py): each operator's readers in the order the layers registered
    (several may read one operator, a reader declining what is not its own, the importer's own
    op_* reader last where it has one), their attributes the importer's."""
    from layerloom.interop import onnx_import
    seen = {}
    for type_id, form in declared("onnx").items():
        for op, r in form.reads.items():
            seen.setdefault(op, []).append(type_id)
            assert set(r.attributes) <= onnx_import.ATTRIBUTES[op]
    assert {op: [t for t, _ in rs] for op, rs in onnx_import.READS.items()} == seen
    assert seen["MaxPool"][0] == "MaxPooling2D"
    assert seen["ReduceMean"][0] == "GlobalAveragePooling2D"
    assert seen["Conv"][0] == "Conv2D"
