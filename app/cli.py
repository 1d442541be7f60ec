"""`layerloom` command line. `--run` trains headless; nothing here imports Qt."""
import argparse
import json
import os
import signal
import sys
import time

from layerloom.project import loom as projectfile
from layerloom.core.errors import (DataError, LayerloomError, ParamError, ProjectError,
                           TrainingError, quote)
from layerloom.project.fileio import npz_bytes, rescue, write_folder_unit
from layerloom.train.state import FILENAME as TRAINING_STATE, TrainingState, state_path_of
from layerloom.train.progress import ConsoleProgress, metrics_text

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


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
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="render the editor with PROJECT loaded to a PNG and exit")
    p.add_argument("--size", metavar="WxH", default="1400x860",
                   help="window size for --screenshot (default 1400x860)")
    return p


def list_devices(out=sys.stdout):
    """Every OpenCL device, what the capabilities probe found (the first listing on a machine
    probes each device in a child process: a few seconds), and why it is or is not the
    default."""
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


def resume_paths(target):
    """(weights, training state) of a run's folder or of a model_checkpoint file."""
    if os.path.isdir(target):
        return os.path.join(target, "weights.npz"), os.path.join(target, TRAINING_STATE)
    return target, state_path_of(target)


def write_outputs(out_dir, files):
    """The run's outputs as one unit (engine/fileio.write_folder_unit); where they cannot be
    written (a full disk), the trained weights are kept elsewhere and the error says where."""
    try:
        write_folder_unit(out_dir, files)
    except OSError as e:
        kept = rescue("weights.npz", files["weights.npz"])
        raise TrainingError(
            f"could not write the run's outputs to {out_dir} ({e.strerror or e} writing "
            f"{e.filename or 'the folder'}); nothing there changed; "
            + (f"the trained weights are kept in {kept}" if kept else
               "the trained weights could not be kept anywhere either")) from None


def run(args, out=sys.stdout):
    from layerloom.train.session import Session
    from layerloom.data.prepare import prepare_data
    path = args.run
    proj = projectfile.load(path)
    data = prepare_data(proj)
    epochs = args.epochs or proj.training["epochs"]
    resume, initial, out_dir = _starting_point(args, proj, epochs)
    session = Session(proj, device=args.device, batch_size=args.batch_size, seed=args.seed,
                      initial_weights=initial)
    n_train, n_val, n_test = _sample_counts(proj, data)
    out.write(f"Layerloom: training {path} on {session.runtime.describe()}\n")
    out.write(f"Data: {data.description}: {n_train} training, {n_val} validation, "
              f"{n_test} test samples\n")
    out.write(f"Model: {len(proj.graph.nodes)} layers, {session.model.param_count():,} "
              f"parameters; {session.optimizer.name}, batch size {session.batch_size}, "
              f"seed {session.seed}\n")
    out.flush()
    stop = {"signal": None}

    def on_signal(signum, frame):  # Ctrl-C or a scheduler's SIGTERM: stop after the batch
        stop["signal"] = stop["signal"] or signum
    # until the outputs are written: a signal then changes only the exit code
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.perf_counter()
    try:
        if resume is not None:
            out.write(f"Resuming after epoch {resume.epoch}"
                      + (f", batch {resume.batch}" if resume.batch else "")
                      + f" (step {resume.step}) from {args.resume}\n")
        history = session.fit(data, epochs=epochs, callbacks=[ConsoleProgress(epochs, out)],
                              should_stop=lambda: stop["signal"] is not None, out_dir=out_dir,
                              resume=resume)
        total = time.perf_counter() - t0
        history.update({"project": os.path.abspath(path), "device": session.runtime.describe(),
                        "parameters": session.model.param_count(), "total_seconds": total})
        write_outputs(out_dir, {
            "history.json": (json.dumps(history, indent=2) + "\n").encode("utf-8"),
            "weights.npz": npz_bytes(session.model.get_weights()),
            "trained.loom": (json.dumps(projectfile.trained_dict(proj, out_dir, data.fitted),
                                        indent=2) + "\n").encode("utf-8"),
            TRAINING_STATE: session.training_state().to_bytes()})
        recorded = _record(proj, history, session, epochs, out_dir)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return _report(history, total, out_dir, stop["signal"], out, recorded)


def _record(proj, history, session, epochs, out_dir):
    """The run joins the folder's run records (the editor's Runs panel lists them); a record
    that cannot be written is said, the outputs above stand."""
    from layerloom.project import runs
    record = runs.make_record(projectfile.to_dict(proj), history, "command line",
                              session.runtime.describe(), session.model.param_count(),
                              started=time.time() - history["total_seconds"], epochs=epochs,
                              batch_size=session.batch_size, seed=session.seed)
    try:
        rid = runs.save(out_dir, record, session.model.get_weights())
    except OSError as e:
        sys.stderr.write(f"layerloom: warning: the run was not recorded in "
                         f"{os.path.join(out_dir, runs.RECORDS)}: {e.strerror or e}\n")
        return None
    return f"Recorded as run {rid} in {os.path.join(out_dir, runs.RECORDS)} (the editor's Runs tab)"



def _starting_point(args, proj, epochs):
    """(training state to resume or None, initial weights or None, output folder): a resumed
    run continues in the folder of its checkpoint, a new one in runs/<project name>."""
    from layerloom.train.session import load_weights
    if not args.resume:
        initial = load_weights(proj.resolve(proj.weights)) if proj.weights else None
        name = os.path.splitext(os.path.basename(args.run))[0]
        return None, initial, args.out or os.path.join("runs", name)
    weights_path, state_path = resume_paths(args.resume)
    resume = TrainingState.load(state_path)
    resume.check(proj, args.batch_size or proj.training["batch_size"],
                 proj.training["seed"] if args.seed is None else args.seed, epochs)
    initial = load_weights(weights_path, "--resume")
    resume.check_weights(initial)
    return resume, initial, args.out or os.path.dirname(weights_path) or "."


def _sample_counts(proj, data):
    """(training, validation, test) samples; a validation_split takes from the training rows."""
    n = len(next(iter(data.x.values())))
    if data.validation:
        return n, len(next(iter(data.validation[0].values()))), _rows(data.x_test)
    n_val = int(n * proj.training.get("validation_split", 0.0))
    return n - n_val, n_val, _rows(data.x_test)


def _rows(arrays):
    return len(next(iter(arrays.values()))) if arrays else 0


def _report(history, total, out_dir, signum, out, recorded=None):
    """The run's last lines, and its exit code."""
    eps = history["epochs"]
    if eps:
        first = eps[0]["seconds"]
        later = [e["seconds"] for e in eps[1:]]
        timing = f"first epoch {first:.2f}s (includes kernel compilation)"
        if later:
            timing += f", then {sum(later) / len(later):.2f}s/epoch"
        out.write(f"Done: {len(eps)} epoch(s) in {total:.1f}s, {timing}.\n")
        out.write("Final: " + metrics_text(eps[-1]) + "\n")
    if "test" in history:
        out.write("Test: " + metrics_text(history["test"]) + "\n")
    out.write(f"Wrote {os.path.join(out_dir, 'history.json')}, "
              f"{os.path.join(out_dir, 'weights.npz')}, "
              f"{os.path.join(out_dir, 'trained.loom')} (the project with its fitted "
              f"preprocessing, beside the weights) and {TRAINING_STATE} (to --resume it)\n")
    if recorded:
        out.write(recorded + "\n")
    if "early_stopping" in history:
        es = history["early_stopping"]
        out.write(f"Early stopping at epoch {es['stopped_epoch']}; best epoch {es['best_epoch']}"
                  + (" (its weights restored)" if es["restored"] else "") + ".\n")
    if history.get("stopped_reason"):
        if "weights_from_epoch" in history:
            e = history["weights_from_epoch"]
            out.write("The weights written are the last finite ones: "
                      + (f"after epoch {e}.\n" if e else "the initial ones.\n"))
        sys.stderr.write(f"layerloom: error: training stopped: {history['stopped_reason']}\n")
        return EXIT_FAILED
    if history["stopped"]:
        by = "SIGTERM" if signum == signal.SIGTERM else "the user"
        out.write(f"Stopped by {by}; the weights are those after the last finished batch.\n")
        return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
    return EXIT_OK


def _project_arg(args):
    """The project file the command is about, to name in its messages."""
    return (args.run or args.predict or args.evaluate or args.export or args.import_onnx
            or args.project)


def _doing(args):
    """What the command was doing, to name an unexpected failure by (not always 'training')."""
    for attr, word in (("run", "training"), ("predict", "prediction"),
                       ("evaluate", "evaluation"), ("export", "export"),
                       ("import_onnx", "import"), ("list_devices", "the device survey")):
        if getattr(args, attr, None):
            return word
    return "the editor"


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.list_devices:
            return list_devices()
        if args.run:
            return run(args)
        for command in ("predict", "evaluate", "export", "import_onnx"):
            if getattr(args, command):
                from layerloom.app import use
                return getattr(use, command)(args)
        if args.project and not os.path.exists(args.project):
            raise ProjectError("no such file")
        if args.screenshot:
            try:
                w, h = (int(v) for v in args.size.lower().split("x"))
            except ValueError:
                raise LayerloomError(f"--size: expected WIDTHxHEIGHT, got {args.size!r}") from None
            if args.project:
                projectfile.load(args.project, strict=False)  # a damaged file is refused
            from layerloom.app.main_window import screenshot
            if not screenshot(args.screenshot, args.project, (w, h)):
                raise LayerloomError(f"could not write {args.screenshot}")
            return EXIT_OK
        if args.project:
            projectfile.load(args.project, strict=False)
        from layerloom.app.main_window import run_editor
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
