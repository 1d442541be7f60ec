"""PyTorch CPU reference for bench/train.py: the same models as the Fashion-MNIST example
projects, the same data (read by Layerloom's loader), Adam, same batch size, shuffled every
epoch, accuracy computed as Layerloom does. Prints one JSON line with per-epoch seconds.

    python bench/torch_reference.py mlp|cnn|user_cnn|user_residual_cnn EPOCHS [--batches N]
"""
import json
import sys
import time



def model(kind, nn):
    """(network, batch size) of each bench model, as its project file has it."""
    if kind in ("user_cnn", "user_residual_cnn"):
        return _user_cnn(nn, residual=kind == "user_residual_cnn"), 32
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                             nn.ReLU(), nn.Linear(128, 10)), 128
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128),
                         nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10)), 64


def _user_cnn(nn, residual):
    """bench/projects/user_cnn.loom (issue 29): Conv2D 16 3x3 same relu, BatchNormalization,
    Conv2D 16 3x3 same relu (added to the BatchNormalization's output when residual),
    MaxPooling2D 2, Flatten, Dense 10."""
    import torch

    class UserCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_1 = nn.Conv2d(1, 16, 3, padding=1)
            self.bn = nn.BatchNorm2d(16, eps=1e-3, momentum=0.01)
            self.conv_2 = nn.Conv2d(16, 16, 3, padding=1)
            self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 14 * 14, 10))

        def forward(self, x):
            b = self.bn(torch.relu(self.conv_1(x)))
            c = torch.relu(self.conv_2(b))
            return self.head(c + b if residual else c)
    return UserCNN()


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
