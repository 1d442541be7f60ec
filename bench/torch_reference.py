"""PyTorch CPU reference for bench/train.py: the same models as the Fashion-MNIST example
projects, the same data (read by Layerloom's loader), Adam, same batch size, shuffled every
epoch, accuracy computed as Layerloom does. Prints one JSON line with per-epoch seconds.

    python bench/torch_reference.py mlp|cnn EPOCHS [--batches N]
"""
import json
import sys
import time



def model(kind, nn):
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                             nn.ReLU(), nn.Linear(128, 10)), 128
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128),
                         nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10)), 64


def main():
    import numpy as np
    import torch
    from torch import nn
    from layerloom.data import keras_sets
    kind, epochs = sys.argv[1], int(sys.argv[2])
    limit = int(sys.argv[sys.argv.index("--batches") + 1]) if "--batches" in sys.argv else None
    torch.manual_seed(0)
    (x, y), _ = keras_sets.load("fashion_mnist")
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW for torch
    y = torch.from_numpy(y.astype(np.int64))
    net, bs = model(kind, nn)
    opt = torch.optim.Adam(net.parameters(), lr=0.002)
    loss_fn = nn.CrossEntropyLoss()
    times, last = [], {}
    for epoch in range(epochs):
        t = time.perf_counter()
        order = torch.randperm(len(x))
        n_batches = (len(x) + bs - 1) // bs if limit is None else limit
        total, correct = 0.0, 0
        net.train()
        for b in range(n_batches):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        times.append(time.perf_counter() - t)
        last = {"loss": total / (n_batches * bs), "accuracy": correct / (n_batches * bs)}
    print(json.dumps({"epoch_seconds": times, "batches": n_batches, "threads":
                      torch.get_num_threads(), "torch": torch.__version__, **last}))


if __name__ == "__main__":
    main()
