"""`layerloom --run`: a project trained headless, its outputs (history, weights, the trained
project, the training state to --resume from) written as one unit and recorded among the
folder's runs. Nothing here imports Qt."""
import contextlib
import json
import os
import signal
import sys
import threading
import time

from layerloom.project import loom as projectfile
from layerloom.core.errors import TrainingError
from layerloom.core.fileio import npz_bytes, rescue, write_folder_unit
from layerloom.train.state import FILENAME as TRAINING_STATE, TrainingState, state_path_of
from layerloom.train.progress import ConsoleProgress, metrics_text
from layerloom.data.cancel import Cancelled, cancellable
from layerloom.data.progress_words import ProgressWords

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 130, 143


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


SHOWN_FROM = 8 << 20  # a data file smaller than this is read without a progress line
COUNTED_FROM = 1000  # files fewer than this are shown only once they take a second


def data_progress(out):
    """progress(path, done, total, unit="bytes") for data being read (or downloaded) in bytes,
    or an image folder's files and images (engine/data/imagefolder.py): a live line on a
    terminal, else a line at the start, every 10% and at the end; the rate and the time left
    once they can be told (engine/data/progress_words.py: the editor's words too)."""
    tty = getattr(out, "isatty", lambda: False)()
    words = ProgressWords(lambda: time.perf_counter())  # this module's clock (tests set it)

    def show(path, done, total, unit="bytes"):
        st = words.step(path, unit, done)
        if unit == "bytes" and total and total < SHOWN_FROM or \
                unit != "bytes" and total < COUNTED_FROM and words.clock() - st["t0"] < 1:
            return
        pct = 100 * done / total if total else None
        finished = bool(total) and done >= total
        if not tty and not finished and st["pct"] is not None and (
                pct is None or pct < st["pct"] + 10):
            return
        st["pct"] = pct if pct is not None else 0
        line = words.line(path, done, total, unit)
        if tty:
            out.write(f"\r{line}\x1b[K" + ("\n" if finished else ""))
        else:
            out.write(line + "\n")
        out.flush()
    return show


def compile_progress(out):
    """A handler for Runtime.compiling: a line as each program the compiler builds starts
    ("Compiling kernels (n of m): what", m the builds known so far), none for one built
    before on this device (its driver's cache serves it). One write per line, under a lock
    (builds run in several threads); on a terminal it first clears the line the data's
    progress may be drawing."""
    lock = threading.Lock()
    tty = getattr(out, "isatty", lambda: False)()

    def show(build):
        if not build.started or build.cached:
            return
        with lock:
            out.write(("\r\x1b[K" if tty else "") + f"Compiling kernels ({build.n} of "
                      f"{build.m}): {build.what}\n")
            out.flush()
    return show


def start_runtime(proj, device, out):
    """The device's runtime, with the programs nearly every model's first step builds (the
    kernel library, the GEMM tiles and the narrow GEMMs for the graph's output widths) and
    those its layers declare (a convolution's direct kernels, by the device's plan)
    compiling in the background while the data loads, each said as it is built."""
    from layerloom.backend.ops import Ops
    from layerloom.backend.runtime import Runtime
    from layerloom.train.model import layer_programs
    runtime = Runtime(device)
    runtime.compiling.connect(compile_progress(out))
    analysis = proj.graph.analysis()  # a GEMM's output width is a weighted layer's
    widths = {s[-1] for nid, ports in analysis.shapes.items() for s in ports
              if s and nid in analysis.params and analysis.params[nid].total}
    ops = Ops(runtime)
    runtime.prebuild(ops.startup_programs(widths) + layer_programs(proj.graph.flat(), ops))
    return runtime


def warm_up(proj, runtime, batch_size=None, seed=None):
    """Start a thread in which a throwaway copy of the model (its own buffers, weights and
    optimizer, on `runtime`) trains one batch of zeros and evaluates it: PoCL compiles each
    kernel's work-group function at its first launch (~0.1 s each, most of a cold first
    epoch), so they compile there while the data loads. Only on CPU devices, where that lazy
    compile is (GPU drivers compile whole programs at build) and the copy's memory is the
    host's. Returns the thread, or None: join it before the real model uses the runtime. A
    warm-up that fails (too little memory for two copies) is dropped: the real model then
    compiles as it goes, and says its own errors."""
    import numpy as np
    from layerloom.train.session import Session
    if runtime.kind != "cpu":
        return None

    def work():
        try:
            s = Session(proj, runtime=runtime, batch_size=batch_size, seed=seed)
            m, n = s.model, s.batch_size
            xs = {i: np.zeros((n,) + tuple(m.act[(i, 0)].shape), np.float32)
                  for i in m.inputs}
            ys = {o: np.zeros((n,) + tuple(s.losses[o].target_shape(m.output(o).shape)),
                              np.float32) for o in m.outputs}
            s.trainer.train_batch(xs, ys, n, 0)
            s.trainer.read_logs()
            s.trainer.eval_batch(xs, ys, n)
            s.trainer.read_logs()
        except Exception:  # noqa: BLE001 - see above: the real run says what is wrong
            pass
        finally:
            runtime.finish()
    thread = threading.Thread(target=work, name="layerloom-warm-up", daemon=True)
    thread.start()
    return thread


CANCEL_WAIT = 1.0  # seconds a signal waits for the data's read to stop before the exit


@contextlib.contextmanager
def _interruptible():
    """While the data is read: Ctrl-C or SIGTERM cancels the read at its next progress call
    (engine/data/cancel.py), so what it was writing is removed (the image cache's temporary
    file), then exits at once with one line and 130 or 143, as launch.py does before; where
    no progress call comes within CANCEL_WAIT (a step without progress), or at a second
    signal, it exits then. Yields cancelled() for cancellable()."""
    from layerloom.cli.signals import _stop
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    got = []

    def on_signal(signum, frame):
        if got:
            _stop(signum, frame)
        got.append(signum)
        threading.Timer(CANCEL_WAIT, _stop, (signum, None)).start()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(got)
    except Cancelled:
        _stop(got[0], None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def reading_line(dataset):
    """The first line of a run: what it reads, said before reading (a small file shows no
    percentages, and a Keras set took a second and a half of silence to prepare)."""
    d = dataset or {}
    what = d.get("path") or d.get("name") or "(none)"
    return f"Reading the data: {what} ({d.get('source') or 'no source'})\n"


def run(args, out=None, proj=None, record_into=None):
    """proj: the project already loaded and changed (a sweep's trial; args.run names its
    file); record_into: {"folder", "extra"}, where the run's record goes (default the output
    folder) with fields to add to it; its "id" is set once it is recorded."""
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    from layerloom.train.session import Session
    from layerloom.data.prepare import prepare_data
    path = args.run
    proj = proj if proj is not None else projectfile.load(path)
    out.write(reading_line(proj.dataset))
    out.flush()
    runtime = start_runtime(proj, args.device, out)
    warming = warm_up(proj, runtime, args.batch_size, args.seed)
    try:
        with _interruptible() as cancelled:
            data = prepare_data(proj, progress=cancellable(data_progress(out), cancelled))
    except BaseException:
        # bad data (exit 2) or Ctrl-C: the warm-up and the builds end first; a process that
        # exited under them crashed in the OpenCL driver (SIGSEGV instead of exit 2)
        if warming is not None:
            warming.join()
        runtime.wait_for_builds()
        raise
    if warming is not None:
        if warming.is_alive():
            out.write("Compiling kernels: the model's first step (each kernel's work-group "
                      "function), on a throwaway copy\n")
            out.flush()
        warming.join()
    epochs = args.epochs or proj.training["epochs"]
    resume, initial, out_dir = _starting_point(args, proj, epochs)
    session = Session(proj, runtime=runtime, batch_size=args.batch_size, seed=args.seed,
                      initial_weights=initial)
    n_train, n_val, n_test = _sample_counts(proj, data)
    out.write(f"Layerloom: training {path} on {session.runtime.describe()}\n")
    advice = session.runtime.caps.advice
    if advice:
        out.write(f"Note: {advice}\n")
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
        recorded = _record(proj, history, session, epochs, out_dir, record_into)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return _report(history, total, out_dir, stop["signal"], out, recorded,
                   session.runtime.builds)


def _record(proj, history, session, epochs, out_dir, into=None):
    """The run joins the folder's run records (the editor's Runs panel lists them); a record
    that cannot be written is said, the outputs above stand. into: see run()."""
    from layerloom.project import runs
    record = runs.make_record(projectfile.to_dict(proj), history, "command line",
                              session.runtime.describe(), session.model.param_count(),
                              started=time.time() - history["total_seconds"], epochs=epochs,
                              batch_size=session.batch_size, seed=session.seed)
    if "early_stopping" in history:  # the Runs tab and a sweep's ranking mark it
        record["early_stopping"] = history["early_stopping"]
    into = into if into is not None else {}
    record.update(into.get("extra") or {})
    folder = into.get("folder") or out_dir
    try:
        rid = runs.save(folder, record, session.model.get_weights())
    except OSError as e:
        sys.stderr.write(f"layerloom: warning: the run was not recorded in "
                         f"{os.path.join(folder, runs.RECORDS)}: {e.strerror or e}\n")
        return None
    into["id"] = rid
    return f"Recorded as run {rid} in {os.path.join(folder, runs.RECORDS)} (the editor's Runs tab)"



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


def _report(history, total, out_dir, signum, out, recorded=None, builds=()):
    """The run's last lines, and its exit code. builds: the runtime's KernelBuilds."""
    eps = history["epochs"]
    if eps:
        first = eps[0]["seconds"]
        later = [e["seconds"] for e in eps[1:]]
        compiled = [b for b in builds if not b.cached]
        timing = f"first epoch {first:.2f}s (includes kernel compilation"
        if compiled:
            ahead = sum(b.seconds for b in compiled if b.background)
            timing += (f": {len(compiled)} of {len(builds)} programs compiled, "
                       f"{sum(b.seconds for b in compiled):.1f}s, {ahead:.1f}s of it in the "
                       "background while the data loaded")
        timing += ")"
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
