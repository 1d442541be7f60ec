"""The quick-add parser (engine/core/quickadd.py): a layer typed as Keras takes it, its
positional arguments in the declaration's (Keras') order and name=value for any parameter."""
import pytest

from layerloom.core.errors import ParamError
from layerloom.core.quickadd import split_words
from layerloom.core.registry import layer_from_text


@pytest.mark.parametrize("text, type_id, params", [
    ("embedding 10000 32", "Embedding", {"input_dim": 10000, "output_dim": 32}),
    ("embedding 10000", "Embedding", {"input_dim": 10000}),  # Keras' first: input_dim
    ("input 200", "Input", {"shape": (200,)}),
    ("input (200,)", "Input", {"shape": (200,)}),
    ("input (28, 28, 1)", "Input", {"shape": (28, 28, 1)}),
    ("input 28x28x1", "Input", {"shape": (28, 28, 1)}),
    ("input 28 28 1", "Input", {"shape": (28, 28, 1)}),
    ("reshape 7 7 16", "Reshape", {"target_shape": (7, 7, 16)}),
    ("conv2d 16 3x3 relu padding=same", "Conv2D",
     {"filters": 16, "kernel_size": (3, 3), "activation": "relu", "padding": "same"}),
    ("conv2d 16 3 same relu", "Conv2D",
     {"filters": 16, "kernel_size": (3, 3), "padding": "same", "activation": "relu"}),
    ("Conv2D 32 (3, 3) strides=2 use_bias=false", "Conv2D",
     {"filters": 32, "kernel_size": (3, 3), "strides": (2, 2), "use_bias": False}),
    ("conv2d 8 3 kernel_initializer = he_normal", "Conv2D",
     {"filters": 8, "kernel_size": (3, 3), "kernel_initializer": "he_normal"}),
    ("dense 64 relu", "Dense", {"units": 64, "activation": "relu"}),
    ("dense units=10 activation='softmax'", "Dense", {"units": 10, "activation": "softmax"}),
    ("Dense(64, activation=\"relu\")", "Dense", {"units": 64, "activation": "relu"}),
    ("dropout 0.5", "Dropout", {"rate": 0.5}),
    ("dropout rate=5e-1 seed=3", "Dropout", {"rate": 0.5, "seed": 3}),
    ("lstm 32 return_sequences=true", "LSTM", {"units": 32, "return_sequences": True}),
    ("maxpooling2d 2 strides=none", "MaxPooling2D", {"pool_size": (2, 2), "strides": None}),
    ("cropping2d cropping=((1, 1), (2, 2))", "Cropping2D", {"cropping": ((1, 1), (2, 2))}),
    ("reshape 7x7x16", "Reshape", {"target_shape": (7, 7, 16)}),
])
def test_keras_order_and_names(text, type_id, params):
    got_type, got = layer_from_text(text)
    assert got_type == type_id
    for name, want in params.items():
        assert got[name] == want, (name, got)
    assert set(got) == set(params)


@pytest.mark.parametrize("text, says", [
    ("embedding 10000 32 7", "'7'"),
    ("dense 64 relu 12", "'12'"),
    ("dense 64 colour=red", "no parameter 'colour'"),
    ("dense 64 units=-3", "units"),
    ("dense 64 units=128", "units is given twice"),
    ("input 28 28 x", "'x'"),
    ("dropout 1.5", "'1.5'"),
    ("conv2d 16 kernel_size=", "kernel_size= has no value"),
    ("nosuchlayer 3", "no layer type is called 'nosuchlayer'"),
    ("", "type a layer's name"),
    ("dense (64", "unbalanced"),
])
def test_refusals_say_why(text, says):
    with pytest.raises(ParamError) as e:
        layer_from_text(text)
    assert says in e.value.message


def test_a_refused_word_names_what_the_parameters_expect():
    with pytest.raises(ParamError) as e:
        layer_from_text("dense 64 sideways")
    msg = e.value.message
    assert "activation" in msg and "name=value" in msg


def test_a_wrapped_layer_reads_its_own_words():
    type_id, got = layer_from_text("timedistributed Dense 8 relu use_bias=false")
    assert type_id == "TimeDistributed" and got["layer"]["type"] == "Dense"
    inner = got["layer"]["params"]
    assert (inner["units"], inner["activation"], inner["use_bias"]) == (8, "relu", False)


def test_words_keep_brackets_and_equals_together():
    assert split_words("conv2d 16 (3, 3) padding = same") == \
        ["conv2d", "16", "(3, 3)", "padding=same"]
    assert split_words("Dense(64, activation='relu')") == ["Dense", "64", "activation='relu'"]


def test_the_registry_and_the_palette_read_the_same_parser():
    from layerloom.core import registry
    assert registry.layer_from_text("embedding 10000 32") == \
        ("Embedding", {"input_dim": 10000, "output_dim": 32})


def test_the_wrapped_layer_is_named_case_aside():
    """`timedistributed dense 8` was refused ("takes a layer type first, not 'dense'") while the
    outer word was read case aside."""
    _, got = layer_from_text("timedistributed dense 8")
    assert got["layer"]["type"] == "Dense" and got["layer"]["params"]["units"] == 8


# -- a chain in one entry: "input 28 28; flatten; dense 128 relu" (a Sequential in one line) --

def test_a_chain_is_read_layer_by_layer_in_order():
    from layerloom.core.registry import layers_from_text
    chain = layers_from_text("input 28 28; flatten; dense 128 relu; dropout 0.2; "
                             "dense 10 softmax")
    assert [t for t, _ in chain] == ["Input", "Flatten", "Dense", "Dropout", "Dense"]
    assert chain[0][1]["shape"] == (28, 28)
    assert (chain[2][1]["units"], chain[2][1]["activation"]) == (128, "relu")
    assert chain[3][1]["rate"] == 0.2
    assert chain[4][1] == layer_from_text("dense 10 softmax")[1]


def test_one_layer_reads_as_before_and_empty_parts_are_skipped():
    from layerloom.core.registry import layers_from_text
    assert layers_from_text("conv2d 16 3 same relu") == [layer_from_text("conv2d 16 3 same relu")]
    assert [t for t, _ in layers_from_text("dense 8;; dense 4;\n")] == ["Dense", "Dense"]
    assert [t for t, _ in layers_from_text("dense 8\ndense 4")] == ["Dense", "Dense"]


def test_a_semicolon_inside_brackets_or_quotes_is_no_separator():
    from layerloom.core.quickadd import split_chain
    assert split_chain('Lambda("a;b"); dense 2') == ['Lambda("a;b")', "dense 2"]
    assert split_chain("reshape [2;2]; f(x; y)\ndense 2") == ["reshape [2;2]", "f(x; y)", "dense 2"]
    assert split_chain("dense 8; ") == ["dense 8"]


@pytest.mark.parametrize("text, says", [
    ("input 28 28; dense sideways; dense 10", ["layer 2 of 3", "dense sideways", "sideways"]),
    ("input 28 28; blorp 3", ["layer 2 of 2", "blorp"]),
    (" ; ;", ["type a layer's name"]),
])
def test_a_refused_part_of_a_chain_is_named_by_its_place(text, says):
    from layerloom.core.registry import layers_from_text
    with pytest.raises(ParamError) as e:
        layers_from_text(text)
    for s in says:
        assert s in e.value.message, e.value.message


def test_a_stray_quote_does_not_swallow_the_rest_of_a_chain():
    """Review: an apostrophe inside a word opened a quote to the end of the text."""
    from layerloom.core.quickadd import split_chain
    assert split_chain("dense 10 relu'; dense 2") == ["dense 10 relu'", "dense 2"]
    assert split_chain("lambda it's; dense 2") == ["lambda it's", "dense 2"]
    assert split_chain('Lambda("a;b"); dense 2') == ['Lambda("a;b")', "dense 2"]
    assert split_chain("x = 'a;b'; dense 2") == ["x = 'a;b'", "dense 2"]
    assert split_chain('Lambda("a\\";b"); dense 2') == ['Lambda("a\\";b")', "dense 2"]
