"""Writes the ONNX models tests/test_onnx_import.py imports: three exported by PyTorch
(torch.onnx.export, opset 17) and one built with onnx.helper the way tf2onnx writes a Keras
model (NHWC input, Transposes around NCHW operators, MatMul + Add). Run from the repository
root with torch installed: python tests/data/make_onnx_models.py (the tests need only the
files, not torch)."""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_models():
    import torch
    import torch.nn as nn
    torch.manual_seed(0)

    class CNN(nn.Module):  # conv (BatchNorm folded in by the exporter), pool, flatten, softmax
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.pool, self.c2 = nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, stride=2)
            self.fc = nn.Linear(16 * 3 * 3, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.bn(self.c1(x))))
            x = torch.relu(self.c2(x))
            return torch.softmax(self.fc(torch.flatten(x, 1)), 1)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Dropout(0.3),
                                     nn.Linear(32, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1),
                                     nn.Sigmoid())

        def forward(self, x):
            return self.net(x)

    class Residual(nn.Module):  # BatchNorm after an Add stays BatchNormalization
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.avg = nn.AvgPool2d(2)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.c1(x))
            h = torch.relu(self.bn(h + self.c2(h)))
            h = nn.functional.adaptive_avg_pool2d(self.avg(h), 1)
            return self.fc(torch.flatten(h, 1)) * 0.5

    for name, model, shape in (("torch_cnn", CNN(), (2, 1, 14, 14)),
                               ("torch_mlp", MLP(), (2, 6)),
                               ("torch_residual", Residual(), (2, 3, 12, 12))):
        model.eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):  # statistics a training would have left
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        torch.onnx.export(model, (torch.randn(*shape),), os.path.join(HERE, f"{name}.onnx"),
                          input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)


def tf2onnx_style():
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["x_nchw", "k", "kb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c"], ["r"], alpha=0.2, name="leaky"),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="avg"),
        helper.make_node("Conv", ["p", "k2"], ["c2"], name="conv2"),
        helper.make_node("Transpose", ["c2"], ["c2_nhwc"], perm=[0, 2, 3, 1], name="to_nhwc"),
        helper.make_node("Transpose", ["p"], ["p_nhwc"], perm=[0, 2, 3, 1], name="p_to_nhwc"),
        helper.make_node("Concat", ["c2_nhwc", "p_nhwc"], ["cat"], axis=3, name="concat"),
        helper.make_node("Reshape", ["cat", "shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "w"], ["mm"], name="dense"),
        helper.make_node("Add", ["mm", "b"], ["logits"], name="dense_bias"),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1, name="softmax"),
    ]
    inits = [init("k", rng.standard_normal((6, 2, 3, 3)) * 0.3), init("kb", rng.standard_normal(6)),
             init("k2", rng.standard_normal((6, 6, 1, 1)) * 0.3),
             numpy_helper.from_array(np.array([-1, 4 * 4 * 12], np.int64), "shape"),
             init("w", rng.standard_normal((4 * 4 * 12, 5)) * 0.1), init("b", rng.standard_normal(5))]
    graph = helper.make_graph(
        nodes, "tf2onnx_style", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                               ["batch", 8, 8, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(HERE, "tf2onnx_style.onnx"))


if __name__ == "__main__":
    torch_models()
    tf2onnx_style()
