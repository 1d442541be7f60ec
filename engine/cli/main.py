"""The `layerloom` command line: its arguments, which command they name, and how a failure is
said (one line and an exit code, never a traceback). `--run` is run.py, `--predict`,
`--evaluate`, `--export` and `--import` are use_model.py; with no command the editor starts
(layerloom.app, imported only then). Nothing here imports Qt."""
import argparse
import os
import sys

from layerloom.project import loom as projectfile
from layerloom.core.errors import DataError, LayerloomError, ParamError, ProjectError, quote
from .run import run

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _positive_int(text, limit=1_000_000):
    """--epochs and --batch-size: the bounds the project file has (TRAINING_PARAMS)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {quote(text)}") \
            from None
    if not 1 <= v <= limit:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {limit:,}, got "
                                         f"{quote(text)}")
    return v


def _seed(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2^32-1, got {text!r}")
    return v


MAX_PROBLEM_LINES = 20  # a file with 100,000 problems must not print 100,000 lines


def build_parser():
    p = argparse.ArgumentParser(
        prog="layerloom",
        description="Build neural networks as graphs and train them on any OpenCL device.",
        epilog="Exit codes: 0 success, 1 training (or another command) failed, 2 invalid input, "
               "130 interrupted.")
    p.add_argument("project", nargs="?", help="project file (.loom) to open in the editor")
    p.add_argument("--run", metavar="PROJECT", help="train PROJECT headless and exit")
    p.add_argument("--sweep", nargs=2, metavar=("PROJECT", "SPEC"),
                   help="train PROJECT once for each trial of SPEC (a JSON file, or inline: "
                        "'learning_rate=logrange(1e-4,1e-1,6)'; README, Sweeps), each a recorded "
                        "run in --out (default runs/<project>), and rank them; run again to "
                        "resume")
    p.add_argument("--predict", metavar="PROJECT",
                   help="run the trained PROJECT (a trained.loom) on --input and write the "
                        "predictions to --output (.csv, .npy, .npz; default: CSV on stdout)")
    p.add_argument("--evaluate", metavar="PROJECT",
                   help="loss and metrics of the trained PROJECT on its test split, or on a "
                        "labelled --input; --json FILE writes them")
    p.add_argument("--export", metavar="PROJECT",
                   help="write the trained PROJECT to --to FILE: an ONNX or Keras model, or a "
                        "Keras or PyTorch training script (--format)")
    p.add_argument("--import", dest="import_onnx", metavar="MODEL",
                   help="convert an ONNX (.onnx) or Keras (.keras, .h5) model into a project "
                        "(--to PROJECT.loom) with its weights beside it")
    p.add_argument("--input", metavar="FILE",
                   help="for --predict/--evaluate: .npy, .npz (arrays named after the Input "
                        "nodes), .csv/.tsv with the training columns, an image or a folder of "
                        "images")
    p.add_argument("--output", metavar="FILE", help="for --predict: .csv, .npy or .npz")
    p.add_argument("--json", metavar="FILE", help="for --evaluate: the figures as JSON")
    p.add_argument("--format", choices=("onnx", "keras", "keras-code", "pytorch-code"),
                   help="for --export: what to write (default from --to's extension: .onnx, "
                        ".keras; a .py script needs keras-code or pytorch-code)")
    p.add_argument("--to", metavar="FILE",
                   help="for --export: the ONNX file to write; for --import: the project")
    p.add_argument("--epochs", type=_positive_int, help="override the project's epochs")
    p.add_argument("--batch-size", type=_positive_int, help="override the project's batch size")
    p.add_argument("--seed", type=_seed, help="override the project's seed")
    p.add_argument("--device", metavar="SPEC",
                   help="OpenCL device: gpu, cpu, P:D (from --list-devices) or part of its name; "
                        "default $LAYERLOOM_DEVICE, else the first GPU, else the CPU")
    p.add_argument("--out", metavar="DIR",
                   help="where to write history.json and weights.npz (default runs/<project>, "
                        "or the --resume folder)")
    p.add_argument("--resume", metavar="DIR_OR_CHECKPOINT",
                   help="continue the run whose outputs are in DIR (or a model_checkpoint "
                        "file with its .state.npz) exactly where it stopped, to --epochs or "
                        "the project's epochs in all")
    p.add_argument("--list-devices", action="store_true", help="list OpenCL devices and exit")
    p.add_argument("--cache", choices=("info", "clear"),
                   help="the data cache (decoded image folders, tables too large for memory): "
                        "where it is, its size, limit "
                        "($LAYERLOOM_CACHE_LIMIT, default 2G) and entries; or clear it")
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="render the editor with PROJECT loaded to a PNG and exit")
    p.add_argument("--size", metavar="WxH", default="1400x860",
                   help="window size for --screenshot (default 1400x860)")
    return p


def list_devices(out=None):
    """Every OpenCL device, what the capabilities probe found (the first listing on a machine
    probes each device in a child process: a few seconds), and why it is or is not the
    default."""
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    from layerloom.backend.runtime import describe_device, survey
    choices = survey(probe_all=True)
    if not choices:
        out.write("No OpenCL device found. Install the CPU driver with: "
                  "pip install \"pyopencl[pocl]\"\n")
        return EXIT_INVALID
    for c in choices:
        mark = "*" if c.default else " "
        out.write(f"{mark} {c.pi}:{c.di}  {describe_device(c.plat, c.dev)}  "
                  f"[{c.dev.global_mem_size >> 20} MiB, {c.dev.max_compute_units} compute "
                  f"units]\n")
        out.write(f"        {c.why}\n")
    if not any(c.default for c in choices):
        out.write("No device works without --device; see the reasons above.\n")
    out.write("* = used by default (override with --device or $LAYERLOOM_DEVICE)\n")
    return EXIT_OK

def _project_arg(args):
    """The project file the command is about, to name in its messages."""
    return (args.run or (args.sweep or [None])[0] or args.predict or args.evaluate
            or args.export or args.import_onnx or args.project)


def _doing(args):
    """What the command was doing, to name an unexpected failure by (not always 'training')."""
    for attr, word in (("run", "training"), ("sweep", "the sweep"), ("predict", "prediction"),
                       ("evaluate", "evaluation"), ("export", "export"),
                       ("import_onnx", "import"), ("list_devices", "the device survey"),
                       ("cache", "the cache command")):
        if getattr(args, attr, None):
            return word
    return "the editor"


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.list_devices:
            return list_devices()
        if args.cache:
            from layerloom.data import image_cache
            lines = image_cache.info() if args.cache == "info" else [image_cache.clear()]
            sys.stdout.write("".join(line + "\n" for line in lines))
            return EXIT_OK
        if args.run:
            return run(args)
        if args.sweep:
            from layerloom.cli.sweep import sweep
            return sweep(args)
        for command in ("predict", "evaluate", "export", "import_onnx"):
            if getattr(args, command):
                from layerloom.cli import use_model
                return getattr(use_model, command)(args)
        if args.project and not os.path.exists(args.project):
            raise ProjectError("no such file")
        if args.screenshot:
            try:
                w, h = (int(v) for v in args.size.lower().split("x"))
            except ValueError:
                raise LayerloomError(f"--size: expected WIDTHxHEIGHT, got {args.size!r}") from None
            if args.project:
                projectfile.load(args.project, strict=False)  # a damaged file is refused
            from layerloom.app.window.main_window import screenshot
            if not screenshot(args.screenshot, args.project, (w, h)):
                raise LayerloomError(f"could not write {args.screenshot}")
            return EXIT_OK
        if args.project:
            projectfile.load(args.project, strict=False)
        from layerloom.app.window.main_window import run_editor
        return run_editor(args.project)
    except ProjectError as e:
        where = _project_arg(args) or ""
        lines = e.lines()
        for line in lines[:MAX_PROBLEM_LINES]:
            sys.stderr.write(f"layerloom: error: {where}: {line}\n")
        if len(lines) > MAX_PROBLEM_LINES:
            sys.stderr.write(f"layerloom: error: {where}: ... and {len(lines) - MAX_PROBLEM_LINES}"
                             " more problems\n")
        return e.exit_code
    except LayerloomError as e:
        # the project's own data, weights and parameters: named with the project file
        where = _project_arg(args)
        about_file = where and (isinstance(e, (DataError, ParamError)) or e.place)
        sys.stderr.write(f"layerloom: error: {where + ': ' if about_file else ''}{e}\n")
        return e.exit_code
    except Exception as e:  # a failure during training: one line, no traceback
        if os.environ.get("LAYERLOOM_DEBUG"):
            raise
        sys.stderr.write(f"layerloom: error: {_doing(args)} failed: {type(e).__name__}: {e}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    from .launch import main as launch
    launch()
