"""Writes the Keras fixtures of tests/test_keras_import.py (run from the repository root):

    KERAS_BACKEND=torch .venv/bin/python tests/data/keras/make_keras_models.py

Each model is built with Keras 3 itself, its weights set from a fixed seed (BatchNormalization
statistics included, so inference differs from an untouched layer), saved, and run by Keras on
a fixed input: NAME.keras (or .h5) beside NAME_x.npy and NAME_y.npy (.npz with an array per
input or output layer name where there are several), so the tests need no Keras. The
Keras-2-style files are written with h5py the way tf.keras 2 wrote them (model_config with
batch_input_shape and nested-list inbound_nodes, weight names like dense/kernel:0); their
expected outputs come from the same model built in Keras 3 with the same weights.
Deterministic: the same files on every run (the .keras zips up to their timestamps)."""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers as L  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def randomize(model, seed):
    """Every weight from N(0, 0.4) (variances from U(0.5, 1.5)), so nothing is at its default."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = []
        for v in layer.weights:
            shape = tuple(v.shape)
            if "variance" in v.path:
                ws.append(rng.uniform(0.5, 1.5, shape))
            else:
                ws.append(rng.normal(0.0, 0.4, shape))
        if ws:
            layer.set_weights([w.astype(np.float32) for w in ws])


def save_io(name, model, xs):
    """Inputs and Keras' outputs: .npy for one array, .npz by layer name for several."""
    ys = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    ys = ys if isinstance(ys, list) else [ys]
    def layer_names(tensors):
        return [t._keras_history.operation.name for t in tensors]
    for kind, arrays, names in (("x", xs, layer_names(model.inputs)),
                                ("y", ys, layer_names(model.outputs))):
        path = os.path.join(HERE, f"{name}_{kind}")
        if len(arrays) == 1:
            np.save(path + ".npy", np.asarray(arrays[0]))
        else:
            np.savez(path + ".npz", **{n: np.asarray(a) for n, a in zip(names, arrays)})


def mlp():
    keras.utils.set_random_seed(1)
    m = keras.Sequential([
        keras.Input((8,), name="features"),
        L.Dense(16, activation="relu", name="hidden"),
        L.Dropout(0.2, name="drop"),
        L.Dense(8, activation="tanh", kernel_regularizer=keras.regularizers.L2(0.01),
                name="hidden2"),
        L.Dense(3, activation="softmax", name="probs")], name="mlp")
    m.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005, beta_1=0.8),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m, [np.random.default_rng(11).standard_normal((6, 8)).astype(np.float32)]


def cnn():
    keras.utils.set_random_seed(2)
    m = keras.Sequential([
        keras.Input((12, 12, 3)),
        L.Conv2D(6, 3, padding="same", activation="relu"),
        L.BatchNormalization(),
        L.MaxPooling2D(),
        L.Conv2D(8, (3, 2), strides=(2, 1)),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(10, activation="softmax")], name="cnn")
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.02, momentum=0.9, nesterov=True),
              loss="categorical_crossentropy", metrics=["accuracy"])
    return m, [np.random.default_rng(12).standard_normal((4, 12, 12, 3)).astype(np.float32)]


def functional():
    """Two inputs, a residual Add after BatchNormalization, Dropout, a nested Sequential and two
    outputs with their own losses, weights and metrics."""
    keras.utils.set_random_seed(3)
    image = keras.Input((10, 10, 2), name="image")
    meta = keras.Input((6,), name="meta")
    a = L.Conv2D(4, 3, padding="same", name="conv_a")(image)
    a = L.BatchNormalization(name="bn_a")(a)
    a = L.Activation("relu", name="relu_a")(a)
    skip = L.Conv2D(4, 1, name="conv_skip")(image)
    x = L.Add(name="residual")([a, skip])
    x = L.Dropout(0.25, name="drop")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    block = keras.Sequential([L.Dense(8, activation="gelu"), L.LayerNormalization()],
                             name="meta_block")
    m_ = block(meta)
    x = L.Concatenate(name="joined")([x, m_])
    cls = L.Dense(3, activation="softmax", name="cls")(x)
    reg = L.Dense(1, name="reg")(x)
    m = keras.Model([image, meta], [cls, reg], name="two_in_two_out")
    m.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.002, rho=0.8),
              loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              loss_weights={"cls": 1.0, "reg": 0.5},
              metrics={"cls": ["accuracy"], "reg": ["mae"]})
    rng = np.random.default_rng(13)
    return m, [rng.standard_normal((5, 10, 10, 2)).astype(np.float32),
               rng.standard_normal((5, 6)).astype(np.float32)]


def recurrent():
    keras.utils.set_random_seed(4)
    tokens = keras.Input((7,), dtype="int32", name="tokens")
    x = L.Embedding(20, 6, name="embed")(tokens)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.GRU(4, name="gru")(x)
    y = L.Dense(2, activation="sigmoid", name="out")(x)
    m = keras.Model(tokens, y, name="recurrent")
    m.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=100, decay_rate=0.9)),
        loss="binary_crossentropy", metrics=["accuracy", keras.metrics.AUC(num_thresholds=50)])
    return m, [np.random.default_rng(14).integers(0, 20, (4, 7)).astype(np.int32)]


def sequence():
    keras.utils.set_random_seed(5)
    m = keras.Sequential([
        keras.Input((9, 3)),
        L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="elu"),
        L.AveragePooling1D(2, padding="same"),
        L.SimpleRNN(5, return_sequences=True),
        L.LayerNormalization(epsilon=1e-5),
        L.Flatten(),
        L.Dense(2)], name="sequence")
    m.compile(optimizer="adagrad", loss=keras.losses.Huber(delta=0.5), metrics=["mse"])
    return m, [np.random.default_rng(15).standard_normal((3, 9, 3)).astype(np.float32)]


def unsupported_layer():
    m = keras.Sequential([keras.Input((3, 5, 1)), L.ConvLSTM1D(2, 3, name="up"),
                          L.Flatten()], name="bad_layer")
    return m, None


def unsupported_option():
    m = keras.Sequential([keras.Input((5, 2)), L.LSTM(3, go_backwards=True, name="backwards")],
                         name="bad_option")
    return m, None


def shared():
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    dense = L.Dense(2, name="twice")
    m = keras.Model([a, b], L.Add(name="sum")([dense(a), dense(b)]), name="shared")
    return m, None


# -- Keras 2 (tf.keras) files, written by hand --------------------------------------------------
def _k2_layer(cls, name, config, inbound):
    return {"class_name": cls, "config": {"name": name, "trainable": True, "dtype": "float32",
                                          **config},
            "name": name, "inbound_nodes": [[[src, 0, 0, {}] for src in inbound]]}


def _k2_dense(units, activation):
    return {"units": units, "activation": activation, "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def keras2_functional():
    """tf.keras 2.x's Functional config: batch_input_shape, nested-list inbound_nodes, a
    Keras-2 BatchNormalization (axis as a list, fused), Dropout with noise_shape."""
    conv = {"filters": 3, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
            "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": "relu", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}
    bn = {"axis": [3], "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True,
          "beta_initializer": {"class_name": "Zeros", "config": {}},
          "gamma_initializer": {"class_name": "Ones", "config": {}},
          "moving_mean_initializer": {"class_name": "Zeros", "config": {}},
          "moving_variance_initializer": {"class_name": "Ones", "config": {}},
          "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
          "gamma_constraint": None}
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 1],
                                                "dtype": "float32", "sparse": False,
                                                "ragged": False, "name": "pixels"},
         "name": "pixels", "inbound_nodes": []},
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                "dtype": "float32", "sparse": False,
                                                "ragged": False, "name": "extra"},
         "name": "extra", "inbound_nodes": []},
        _k2_layer("Conv2D", "conv2d", conv, ["pixels"]),
        _k2_layer("BatchNormalization", "batch_normalization", bn, ["conv2d"]),
        _k2_layer("Flatten", "flatten", {"data_format": "channels_last"},
                  ["batch_normalization"]),
        _k2_layer("Dropout", "dropout", {"rate": 0.5, "noise_shape": None, "seed": None},
                  ["flatten"]),
        _k2_layer("Dense", "dense", _k2_dense(4, "relu"), ["extra"]),
        _k2_layer("Concatenate", "concatenate", {"axis": -1}, ["dropout", "dense"]),
        _k2_layer("Dense", "dense_1", _k2_dense(2, "softmax"), ["concatenate"]),
    ]
    config = {"class_name": "Functional", "config": {
        "name": "model", "layers": layers,
        "input_layers": [["pixels", 0, 0], ["extra", 0, 0]],
        "output_layers": [["dense_1", 0, 0]]}, "keras_version": "2.13.1",
        "backend": "tensorflow"}
    training = {"loss": "categorical_crossentropy", "metrics": [[{
        "class_name": "MeanMetricWrapper", "config": {"name": "accuracy", "dtype": "float32",
                                                      "fn": "categorical_accuracy"}}]],
        "weighted_metrics": None, "loss_weights": None,
        "optimizer_config": {"class_name": "Adam", "config": {
            "name": "Adam", "weight_decay": None, "clipnorm": None, "global_clipnorm": None,
            "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
            "ema_overwrite_frequency": None, "jit_compile": True, "is_legacy_optimizer": False,
            "learning_rate": 0.0003000000142492354, "beta_1": 0.9, "beta_2": 0.999,
            "epsilon": 1e-07, "amsgrad": False}}}
    # the same model in Keras 3, for its weights and outputs
    keras.utils.set_random_seed(6)
    pixels, extra = keras.Input((6, 6, 1), name="pixels"), keras.Input((4,), name="extra")
    x = L.Conv2D(3, 3, activation="relu", name="conv2d")(pixels)
    x = L.BatchNormalization(name="batch_normalization")(x)
    x = L.Dropout(0.5, name="dropout")(L.Flatten(name="flatten")(x))
    x = L.Concatenate(name="concatenate")([x, L.Dense(4, activation="relu", name="dense")(extra)])
    m = keras.Model([pixels, extra], L.Dense(2, activation="softmax", name="dense_1")(x))
    return config, training, m


def keras2_sequential():
    """tf.keras 2.x's Sequential: no InputLayer, the first layer's batch_input_shape."""
    first = dict(_k2_dense(5, "sigmoid"), batch_input_shape=[None, 3])
    layers = [{"class_name": "Dense", "config": {"name": "dense", "trainable": True,
                                                 "dtype": "float32", **first}},
              {"class_name": "Dense", "config": {"name": "dense_1", "trainable": True,
                                                 "dtype": "float32", **_k2_dense(1, "linear")}}]
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers},
              "keras_version": "2.11.0", "backend": "tensorflow"}
    training = {"loss": "mse", "metrics": ["mae"], "loss_weights": None,
                "optimizer_config": {"class_name": "SGD", "config": {
                    "name": "SGD", "learning_rate": 0.05, "decay": 0.0, "momentum": 0.5,
                    "nesterov": False}}}
    keras.utils.set_random_seed(7)
    m = keras.Sequential([keras.Input((3,)), L.Dense(5, activation="sigmoid", name="dense"),
                          L.Dense(1, name="dense_1")])
    return config, training, m


def write_keras2(name, config, training, model, xs):
    """model's weights under tf.keras 2's names in an .h5 with `config`."""
    randomize(model, 100 + len(name))
    path = os.path.join(HERE, f"{name}.h5")
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = config.pop("keras_version")
        f.attrs["backend"] = config.pop("backend")
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["training_config"] = json.dumps(training)
        g = f.create_group("model_weights")
        names = [l.name for l in model.layers]
        g.attrs["layer_names"] = [n.encode() for n in names]
        for layer in model.layers:
            lg = g.create_group(layer.name)
            wnames = [f"{layer.name}/{v.name}:0" for v in layer.weights]
            lg.attrs["weight_names"] = [w.encode() for w in wnames]
            for w, v in zip(wnames, layer.weights):
                lg.create_dataset(w, data=np.asarray(v.numpy(), np.float32))
    save_io(name, model, xs)


def main():
    for name, build in (("mlp", mlp), ("cnn", cnn), ("functional", functional),
                        ("recurrent", recurrent), ("sequence", sequence),
                        ("unsupported_layer", unsupported_layer),
                        ("unsupported_option", unsupported_option), ("shared", shared)):
        model, xs = build()
        if xs is not None:
            randomize(model, len(name))
            save_io(name, model, xs)
        model.save(os.path.join(HERE, f"{name}.keras"))
        if name in ("cnn", "functional"):  # Keras 3's legacy HDF5: the same NAME_x, NAME_y
            model.save(os.path.join(HERE, f"{name}.h5"))
    rng = np.random.default_rng(16)
    config, training, m = keras2_functional()
    write_keras2("keras2_functional", config, training, m,
                 [rng.standard_normal((3, 6, 6, 1)).astype(np.float32),
                  rng.standard_normal((3, 4)).astype(np.float32)])
    config, training, m = keras2_sequential()
    write_keras2("keras2_sequential", config, training, m,
                 [rng.standard_normal((4, 3)).astype(np.float32)])
    for f in sorted(os.listdir(HERE)):
        print(f"{os.path.getsize(os.path.join(HERE, f)):8d}  {f}", file=sys.stderr)


if __name__ == "__main__":
    main()
