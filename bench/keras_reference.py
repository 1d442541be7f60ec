"""Keras 3 on TensorFlow CPU reference for bench/train.py: the same models as the Fashion-MNIST
example projects, the same data (read by Layerloom's loader), Adam, same batch size, shuffled
every epoch, trained the way a Keras user would (compile, then fit). Prints one JSON line with
per-epoch seconds. Run it with a Python that has tensorflow (bench/train.py --keras-python).

    python bench/keras_reference.py mlp|cnn EPOCHS [--batches N]
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def model(kind, keras):
    L = keras.layers
    if kind == "mlp":
        return keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(),
                                 L.Dense(256, activation="relu"),
                                 L.Dense(128, activation="relu"), L.Dense(10)]), 128
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                             L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                             L.MaxPooling2D(2), L.Flatten(), L.Dense(128, activation="relu"),
                             L.Dropout(0.3), L.Dense(10)]), 64


def main():
    import keras
    import tensorflow as tf
    from layerloom.data import keras_sets
    kind, epochs = sys.argv[1], int(sys.argv[2])
    limit = int(sys.argv[sys.argv.index("--batches") + 1]) if "--batches" in sys.argv else None
    keras.utils.set_random_seed(0)
    (x, y), _ = keras_sets.load("fashion_mnist")
    net, bs = model(kind, keras)
    if limit is not None:
        x, y = x[:limit * bs], y[:limit * bs]
    net.compile(optimizer=keras.optimizers.Adam(0.002),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    h = net.fit(x, y.astype("int64"), batch_size=bs, epochs=epochs, shuffle=True, verbose=0,
                callbacks=[Timer()])
    print(json.dumps({"epoch_seconds": times, "batches": -(-len(x) // bs),
                      "tensorflow": tf.__version__, "keras": keras.__version__,
                      "jit_compile": bool(net.jit_compile),
                      "loss": h.history["loss"][-1], "accuracy": h.history["accuracy"][-1]}))


if __name__ == "__main__":
    main()
