"""The text of torch_code.py's script; @NAME@ marks what the export fills in."""
import re

TEMPLATE = '''"""PyTorch model and training script exported by Layerloom from @project@.

    python @script@ [--epochs N] [--no-weights] [--save-weights trained.npz]
    torchrun --nproc_per_node=N @script@ ...      # DistributedDataParallel
    import @module@; model = @module@.build_model()   # eval mode, exported weights loaded

The model takes raw inputs, channels-last as Layerloom's --predict takes them from an array
file; the statistics Layerloom fitted are applied inside ((x - shift) * scale). Weights:
@weights@ beside this file, in Layerloom's names and layout ("node/weight");
load_layerloom_weights converts them to torch's (Linear: (out, in), Conv2d: OIHW) and
layerloom_arrays converts back, so --save-weights writes a file a Layerloom project's
"weights" key reads.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = @project_path@  # the data comes from here (through layerloom, or numpy)
WEIGHTS = os.path.join(HERE, @weights_repr@)
EPOCHS, BATCH_SIZE, SEED = @epochs@, @batch_size@, @seed@
VALIDATION_SPLIT, SHUFFLE = @validation_split@, @shuffle@
INPUT_IDS, OUTPUT_IDS = @input_ids@, @output_ids@

# the fitted input normalisation, by Input: y = (x - shift) * scale
NORMALIZATION = @normalization@

# Layerloom weight "node/name" -> (torch state_dict key, layout of Layerloom's array):
# "T" a Dense kernel (in, out) for Linear's (out, in); "HWIO" a Conv2D kernel for OIHW
TORCH_WEIGHTS = @torch_weights@

# output -> (loss, from_logits, loss weight), Keras' definitions
LOSSES = @losses@
@host@

@classes@class LayerloomModel(nn.Module):
    """The graph, one submodule per node (named by its node id); tensors channels-last."""

    def __init__(self):
        super().__init__()
@init@
    def forward(self, inputs):
        if not isinstance(inputs, dict):
            inputs = {INPUT_IDS[0]: inputs}
        inputs = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in inputs.items()}
@forward@
@frozen@
def _to_torch(a, layout):
    a = np.asarray(a, np.float32)
    if layout == "T":
        return a.T
    if layout == "HWIO":
        return a.transpose(3, 2, 0, 1)
    if layout == "WIO":  # a Conv1D kernel (width, in, out) for Conv1d's (out, in, width)
        return a.transpose(2, 1, 0)
    if layout == "DHWIO":  # a Conv3D kernel for Conv3d's (out, in, depth, height, width)
        return a.transpose(4, 3, 0, 1, 2)
    return a


def _to_layerloom(a, layout):
    if layout == "T":
        return a.T
    if layout == "HWIO":
        return a.transpose(2, 3, 1, 0)
    if layout == "WIO":
        return a.transpose(2, 1, 0)
    if layout == "DHWIO":
        return a.transpose(2, 3, 4, 1, 0)
    return a


def load_layerloom_weights(model, weights=WEIGHTS):
    """Set the weights from Layerloom's arrays: a path of its .npz, or a dict."""
    arrays = np.load(weights) if isinstance(weights, str) else weights
    state = model.state_dict()
    with torch.no_grad():
        for name, (key, layout) in TORCH_WEIGHTS.items():
            # np.array, not ascontiguousarray: a scalar weight stays 0-d
            value = torch.from_numpy(np.array(_to_torch(arrays[name], layout), order="C"))
            if tuple(value.shape) != tuple(state[key].shape):
                raise ValueError(f"{name}: shape {tuple(value.shape)}, expected "
                                 f"{tuple(state[key].shape)} for {key}")
            state[key].copy_(value)
    return model


def layerloom_arrays(model):
    """The model's weights in Layerloom's names and layout ({"node/name": array})."""
    model = getattr(model, "module", model)  # under DistributedDataParallel
    state = model.state_dict()
    return {name: np.array(_to_layerloom(state[key].detach().cpu().numpy(), layout),
                           np.float32, order="C")
            for name, (key, layout) in TORCH_WEIGHTS.items()}


def save_layerloom_weights(model, path):
    """Write layerloom_arrays(model) as an .npz (atomically: a temporary file, then rename)."""
    tmp = path + ".tmp.npz"
    np.savez(tmp, **layerloom_arrays(model))
    os.replace(tmp, path)


def build_model(weights=WEIGHTS):
    """The nn.Module in eval mode with the exported weights (when the file is there)."""
    torch.manual_seed(SEED)
    model = LayerloomModel()
    if weights is not None and (not isinstance(weights, str) or os.path.exists(weights)):
        load_layerloom_weights(model, weights)
    return model.eval()


class KerasAdam(torch.optim.Optimizer):
    """Keras' Adam, exactly: w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon).
    (torch.optim.Adam adds epsilon to sqrt(v) / sqrt(1 - b2^t), a different update.)"""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["beta_1"], group["beta_2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s["t"], s["m"], s["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                s["t"] += 1
                t = s["t"]
                s["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                s["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                lr = group["lr"](t - 1) if callable(group["lr"]) else group["lr"]
                alpha = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
                p.sub_(alpha * s["m"] / (s["v"].sqrt() + group["epsilon"]))


class KerasSGD(torch.optim.Optimizer):
    """Keras' SGD: v = momentum * v - lr * g; w += v (nesterov: w += momentum * v - lr * g).
    lr may be a schedule, a function of the step (torch's SGD scales its whole momentum
    buffer by the current learning rate: the same update only while it is constant)."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))
        self.iterations = 0

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr = group["lr"](self.iterations) if callable(group["lr"]) else group["lr"]
            m = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not m:
                    p.sub_(lr * p.grad)
                    continue
                v = self.state[p].setdefault("v", torch.zeros_like(p))
                v.mul_(m).sub_(lr * p.grad)
                p.add_(m * v - lr * p.grad if group["nesterov"] else v)
        self.iterations += 1


class KerasRMSprop(torch.optim.Optimizer):
    """Keras' RMSprop: v = rho v + (1 - rho) g^2 (centered: minus the mean gradient's square);
    inc = lr g / sqrt(v + epsilon); with momentum m = momentum m + inc, w -= m; else w -= inc."""

    def __init__(self, params, lr, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, epsilon=epsilon,
                                      centered=centered))
        self.iterations = 0

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr = group["lr"](self.iterations) if callable(group["lr"]) else group["lr"]
            rho, mom = group["rho"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s["v"], s["a"], s["m"] = (torch.zeros_like(p) for _ in range(3))
                s["v"].mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                denom = s["v"]
                if group["centered"]:
                    s["a"].mul_(rho).add_(p.grad, alpha=1 - rho)
                    denom = denom - s["a"] * s["a"]
                inc = lr * p.grad / (denom + group["epsilon"]).sqrt()
                if mom > 0:
                    s["m"].mul_(mom).add_(inc)
                    p.sub_(s["m"])
                else:
                    p.sub_(inc)
        self.iterations += 1


class KerasAdagrad(torch.optim.Optimizer):
    """Keras' Adagrad: acc += g^2 (from initial_accumulator_value); w -= lr g / sqrt(acc + eps)."""

    def __init__(self, params, lr, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(params, dict(lr=lr, initial=initial_accumulator_value, epsilon=epsilon))
        self.iterations = 0

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr = group["lr"](self.iterations) if callable(group["lr"]) else group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                acc = self.state[p].setdefault("acc", torch.full_like(p, group["initial"]))
                acc.addcmul_(p.grad, p.grad)
                p.sub_(lr * p.grad / (acc + group["epsilon"]).sqrt())
        self.iterations += 1


def learning_rate(step):
    """The learning rate at optimizer step `step` (from 0): the project's (Keras' formulas)."""
@schedule@


def make_optimizer(params):
    return @optimizer@


_EPS = 1e-7  # Keras' backend epsilon: probabilities are clipped to [eps, 1 - eps]


def _one_loss(name, from_logits, pred, target):
    """Keras' loss, averaged over the batch (per-sample: mean over the last axis)."""
    if name == "sparse_categorical_crossentropy":
        target = target.reshape(pred.shape[:-1]).long()
        logp = (torch.log_softmax(pred, -1) if from_logits else
                torch.log((pred / pred.sum(-1, keepdim=True)).clamp(_EPS, 1 - _EPS)))
        return -logp.gather(-1, target.unsqueeze(-1)).mean()
    target = target.reshape(pred.shape)
    if name == "categorical_crossentropy":
        logp = (torch.log_softmax(pred, -1) if from_logits else
                torch.log((pred / pred.sum(-1, keepdim=True)).clamp(_EPS, 1 - _EPS)))
        return -(target * logp).sum(-1).mean()
    if name == "binary_crossentropy":
        if from_logits:
            return F.binary_cross_entropy_with_logits(pred, target, reduction="none").mean(-1).mean()
        p = pred.clamp(_EPS, 1 - _EPS)
        return -(target * torch.log(p + _EPS) + (1 - target) * torch.log(1 - p + _EPS)).mean(-1).mean()
    if name == "mean_squared_error":
        return ((pred - target) ** 2).mean(-1).mean()
    return (pred - target).abs().mean(-1).mean()  # mean_absolute_error


def compute_loss(outputs, targets):
    """The weighted sum of the outputs' losses (Keras' loss_weights)."""
    if not isinstance(outputs, dict):
        outputs = {OUTPUT_IDS[0]: outputs}
    return sum(w * _one_loss(name, logits, outputs[o], targets[o])
               for o, (name, logits, w) in LOSSES.items())


@data@

def _as_dict(a, ids):
    return {k: np.asarray(v) for k, v in a.items()} if isinstance(a, dict) else {ids[0]: a}


def main(argv=None):
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                    help="per process (under torchrun the global batch is N times this)")
    ap.add_argument("--no-weights", action="store_true",
                    help="start from Keras' initialisation, not the exported weights")
    ap.add_argument("--save-weights", help="write the trained weights here (.npz, Layerloom's "
                                           "names and layout)")
    args = ap.parse_args(argv)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cuda = torch.cuda.is_available()
    rank = 0
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    model = build_model(None if args.no_weights else WEIGHTS).to(device).train()
    x, y, validation, test = load_data()
    x = preprocess(x)  # the text layers, in plain Python (as they are without)
    if validation is not None:
        validation = (preprocess(validation[0]), validation[1])
    xs, ys = _as_dict(x, INPUT_IDS), _as_dict(y, OUTPUT_IDS)
    loss_ids = list(LOSSES)
    if validation is None and VALIDATION_SPLIT:  # Keras' validation_split: the last rows
        n = len(xs[INPUT_IDS[0]])
        cut = n - int(n * VALIDATION_SPLIT)
        validation = ({k: v[cut:] for k, v in xs.items()}, {k: v[cut:] for k, v in ys.items()})
        xs, ys = {k: v[:cut] for k, v in xs.items()}, {k: v[:cut] for k, v in ys.items()}
    if validation is not None:
        vx, vy = _as_dict(validation[0], INPUT_IDS), _as_dict(validation[1], OUTPUT_IDS)
        vx = {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in vx.items()}
        vy = {k: torch.as_tensor(vy[k], dtype=torch.float32, device=device) for k in loss_ids}
    dataset = TensorDataset(*[torch.as_tensor(xs[k], dtype=torch.float32) for k in INPUT_IDS],
                            *[torch.as_tensor(ys[k], dtype=torch.float32) for k in loss_ids])
    sampler = DistributedSampler(dataset, shuffle=SHUFFLE, seed=SEED) if distributed else None
    generator = torch.Generator().manual_seed(SEED)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler,
                        shuffle=SHUFFLE and sampler is None, generator=generator)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = make_optimizer(model.parameters())
    n_in = len(INPUT_IDS)
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        total = torch.zeros(2, dtype=torch.float64, device=device)
        for batch in loader:
            batch = [b.to(device) for b in batch]
            inputs = dict(zip(INPUT_IDS, batch[:n_in]))
            targets = dict(zip(loss_ids, batch[n_in:]))
            optimizer.zero_grad()
            loss = compute_loss(net(inputs), targets)
            loss.backward()
            optimizer.step()
            total += torch.tensor([loss.item() * len(batch[0]), len(batch[0])],
                                  dtype=torch.float64, device=device)
        if distributed:
            dist.all_reduce(total)
        if rank == 0:
            line = f"epoch {epoch + 1}/{args.epochs} loss {float(total[0] / total[1]):.6f}"
            if validation is not None:
                model.eval()
                with torch.no_grad():
                    line += f" val_loss {float(compute_loss(model(vx), vy)):.6f}"
            print(line, flush=True)
    if rank == 0 and args.save_weights:
        save_layerloom_weights(model, args.save_weights)
        print(f"wrote {args.save_weights}", flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''


PLACES = set(re.findall(r"@(\w+)@", TEMPLATE))


def fill(**values):
    """TEMPLATE with each @NAME@ replaced (a str as it is, anything else by its repr); one
    pass, so a value that itself contains @...@ stays as it is."""
    missing = PLACES - set(values)
    if missing:
        raise KeyError(f"torch script: no value for {sorted(missing)}")
    return re.sub(r"@(\w+)@", lambda m: (values[m[1]] if isinstance(values[m[1]], str) else
                                         repr(values[m[1]])) if m[1] in PLACES else m[0],
                  TEMPLATE)


NO_HOST = '''

def preprocess(inputs):
    """The raw inputs as the model takes them (this model has no text layers: unchanged)."""
    return inputs
'''

# the host layers (StringLookup, IntegerLookup, TextVectorization: layers/text.py) as plain
# Python, with the vocabularies training adapted
HOST = '''
# The text layers run in plain Python before the model (as in Layerloom, on the host):
# model(preprocess(raw)) takes raw strings; their vocabularies, by node, after the special
# tokens ("" and [UNK] for TextVectorization; the mask, then the OOV token, for a lookup)
import re

RAW_INPUT_IDS = @raw_inputs@
HOST_LAYERS = @host_layers@  # (node, layer, its input, params), in order
VOCABULARY = @vocabulary@
_PUNCTUATION = re.compile(@punctuation@)
_WHITESPACE = re.compile(@whitespace@)


def _tokens(text, p):
    """Keras' standardize (ASCII lower case, punctuation removed) and split."""
    text = str(text)
    if p["standardize"] in ("lower", "lower_and_strip_punctuation"):
        text = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)
    if p["standardize"] in ("strip_punctuation", "lower_and_strip_punctuation"):
        text = _PUNCTUATION.sub("", text)
    if p["split"] == "whitespace":
        return [t for t in _WHITESPACE.split(text) if t]
    return list(text) if p["split"] == "character" else [text]


def text_vectorization(rows, p, vocab):
    index = {t: i for i, t in enumerate(["", "[UNK]"] + vocab)}
    n = p["output_sequence_length"]
    out = np.zeros((len(rows), n), np.float32)
    for r, text in enumerate(np.asarray(rows, object).reshape(len(rows), -1)[:, 0]):
        ids = [index.get(t, 1) for t in _tokens(text, p)][:n]
        out[r, :len(ids)] = ids
    return out


def lookup(rows, p, vocab):
    """StringLookup and IntegerLookup: the OOV index (after a mask token, if any) for unknown
    tokens."""
    special = ([] if p["mask_token"] is None else [p["mask_token"]]) + [p["oov_token"]]
    index = {t: i for i, t in enumerate(list(dict.fromkeys(special)) + vocab)}
    oov = 0 if p["mask_token"] is None else 1
    a = np.asarray(rows, object)
    if p["kind"] == "IntegerLookup":
        a = np.asarray(rows).astype(np.int64).astype(object)
    return np.array([index.get(t, oov) for t in a.reshape(-1).tolist()],
                    np.float32).reshape(a.shape)


@pieces@

def preprocess(inputs):
    """{raw Input id: rows} (or the rows of the one Input) -> the model's inputs."""
    values = dict(inputs) if isinstance(inputs, dict) else {RAW_INPUT_IDS[0]: inputs}
    for nid, kind, src, p in HOST_LAYERS:
        f = {"TextVectorization": text_vectorization, "StringLookup": lookup,
             "IntegerLookup": lookup}.get(kind) or HOST_FUNCTIONS[kind]
        values[nid] = f(values[src], dict(p, kind=kind), VOCABULARY[nid])
    return {k: values[k] for k in INPUT_IDS}
'''
