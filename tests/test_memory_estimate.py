"""The model's memory, known from the graph before Run (engine/core/memory.py): the figure the
model itself refuses by, and the line the editor lists under Problems."""
from layerloom.core.graph import Graph
from layerloom.core.memory import memory_needed, memory_problem, size_text


def _cnn(units=10):
    g = Graph()
    ids = [g.add_node("Input", {"shape": [12, 12, 3]}).id,
           g.add_node("Conv2D", {"filters": 8, "kernel_size": 3}).id,
           g.add_node("BatchNormalization", {}).id,
           g.add_node("Flatten", {}).id,
           g.add_node("Dense", {"units": units, "activation": "softmax"}).id]
    for a, b in zip(ids, ids[1:]):
        g.connect(a, 0, b, 0)
    return g, ids


def test_the_estimate_is_what_the_model_counts(rt):
    """With the model's device the estimate is the model's own figure; with none known (the
    editor's), the most any device takes: the convolution's columns, which a device whose
    plan runs it directly does not allocate (tests/test_conv_memory.py counts the bytes)."""
    from layerloom.train.model import Model
    g, _ = _cnn()
    for batch in (1, 16):
        model = Model(g, rt, batch_size=batch)
        total, largest, _ = memory_needed(g, batch, ops=model.ops)
        assert (total, largest) == model.memory_needed()
        assert memory_needed(g, batch)[0] >= total


def test_the_estimate_by_hand():
    """An Input of 4 and a Dense of 3 at batch 2: the input once (no gradient), the Dense's
    output and its gradient, its kernel and bias four times (weight, gradient, Adam's two)."""
    g = Graph()
    a = g.add_node("Input", {"shape": [4]}).id
    b = g.add_node("Dense", {"units": 3}).id
    g.connect(a, 0, b, 0)
    total, largest, at = memory_needed(g, 2)
    assert total == 4 * (2 * 4 + 2 * 2 * 3 + 4 * (4 * 3 + 3))
    assert (largest, at) == (4 * 12, b)


def test_a_frozen_node_after_a_trainable_one_counts_its_dropped_gradients(rt):
    """Input 256 -> Dense 512 -> Dense 512 (frozen) -> Dense 10 at batch 32, by hand: the frozen
    Dense passes a gradient to the first one, so its backward computes its weights' gradients
    too (a buffer each, dropped: no optimizer slots). The editor's estimate had left them out
    (23% under what the model refuses by)."""
    from layerloom.train.model import Model
    g = Graph()
    a = g.add_node("Input", {"shape": [256]}).id
    b = g.add_node("Dense", {"units": 512}).id
    c = g.add_node("Dense", {"units": 512}).id
    d = g.add_node("Dense", {"units": 10}).id
    for s, t in ((a, b), (b, c), (c, d)):
        g.connect(s, 0, t, 0)
    g.nodes[c].trainable = False
    B = 32
    # the output gradients share buffers where their lives in the backward do not overlap:
    # the first Dense's is written by the frozen one's backward, after the last Dense's
    # backward read its own (10 wide), so the two share one buffer of 512
    want = 4 * (B * 256                                  # the input, no gradient
                + B * 512 + 4 * (256 * 512 + 512)        # trained: weight, gradient, 2 slots
                + B * 512 + 2 * (512 * 512 + 512)        # frozen: weight, dropped gradient
                + B * 10 + 4 * (512 * 10 + 10)
                + 2 * B * 512)  # the gradients: the frozen Dense's; the first's and the last's
    assert memory_needed(g, B)[0] == want
    assert Model(g, rt, batch_size=B).memory_needed()[0] == want
    g.nodes[b].trainable = False  # nothing trainable before the frozen Dense: no gradients
    # the first Dense: weight only (3 buffers fewer); the second: no dropped gradient; and
    # neither output gets a gradient buffer (the model allocates none: the estimate had
    # counted them): the last Dense's gradient alone, 10 wide
    less = want - 4 * (3 * (256 * 512 + 512) + 512 * 512 + 512 + 2 * B * 512 - B * 10)
    assert memory_needed(g, B)[0] == less
    assert Model(g, rt, batch_size=B).memory_needed()[0] == less


def test_a_model_past_the_device_is_an_error_naming_the_node():
    g, ids = _cnn(units=999_999_999)
    line, node, error = memory_problem(g, 32, have=8 * 2**30, one=2 * 2**30, device="GPU X")
    assert error and node == ids[-1]
    assert "needs about" in line and "GiB of device memory at batch size 32" in line
    assert "GPU X has 8.0 GiB" in line and "lower the batch size" in line
    assert memory_problem(_cnn()[0], 32, have=8 * 2**30, one=2 * 2**30) is None
    # no device known: said from 4 GiB up, not as an error
    line, node, error = memory_problem(_cnn(units=1_000_000)[0], 32)
    assert not error and "needs about" in line
    # ... unless one buffer holds more numbers than the kernels' 32-bit indices reach (review:
    # a 3-D convolution's columns pass 2^31 numbers at a batch a large GPU takes)
    line, node, error = memory_problem(g, 32)
    assert error and node == ids[-1] and "32-bit" in line
    line, node, error = memory_problem(g, 32, have=2**50, one=2**50)
    assert error and "32-bit" in line
    assert size_text(12_204 * 2**30) == "12,204.0 GiB" and size_text(512) == "512 bytes"


def test_the_model_refuses_a_buffer_past_the_kernels_indices(rt, monkeypatch):
    """The model's own check, before anything is allocated (the limit lowered so a small model
    reaches it: the real one is 2^31 numbers)."""
    import pytest
    from layerloom.core import memory
    from layerloom.core.errors import DeviceError
    from layerloom.train.model import Model
    g, _ = _cnn()
    monkeypatch.setattr(memory, "MAX_BUFFER_BYTES", 4096)
    with pytest.raises(DeviceError, match="32-bit indices"):
        Model(g, rt, batch_size=32)
