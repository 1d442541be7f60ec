"""Training for the editor runs in a child process, not a thread of the window's process:
the child has its own interpreter lock (a training loop enqueueing kernels from Python held
the window's lock half the time and pushed repaints past 100 ms on 2 cores), runs at a lower
CPU priority, and a crash of an OpenCL driver cannot take the unsaved project down with it.

The child sends ("kind", payload) tuples through a queue; Stop and Pause are shared events
checked after every batch, and Stop also at each progress call of the data's read (a large
CSV or image folder stops within a block or a tenth of a second: engine/data/cancel.py).
No Qt here: the child imports only the engine."""
import multiprocessing as mp
import os
import time
import traceback

from layerloom.data.cancel import Cancelled, cancellable
from layerloom.data.progress_words import ProgressWords
from layerloom.train.fit import Callback


def _check(stop):
    if stop.is_set():
        raise Cancelled()


class Control:
    """The fit's should_stop: holds training between two batches while `pause` is set (the
    time held summed in `paused`), true once `stop` is set."""

    def __init__(self, stop, pause):
        self.stop, self.pause, self.paused = stop, pause, 0.0

    def __call__(self):
        if self.pause.is_set() and not self.stop.is_set():
            t = time.perf_counter()
            while self.pause.is_set() and not self.stop.is_set():
                self.stop.wait(0.05)
            self.paused += time.perf_counter() - t
        return self.stop.is_set()


class _Sender(Callback):
    """Sends the fit's progress; an epoch's seconds leave out the time it was paused."""

    def __init__(self, q, control=None):
        self.q, self.control, self._held = q, control, 0.0

    def on_epoch_begin(self, epoch):
        self._held = self.control.paused if self.control else 0.0

    def on_train_begin(self, info):
        self.q.put(("begin", (info["epochs"], info["batches"])))

    def on_batch_end(self, epoch, batch, num_batches, logs):
        if logs is not None:
            self.q.put(("batch", (epoch, batch, num_batches, dict(logs))))

    def on_epoch_end(self, epoch, logs):
        if self.control is not None:  # the record in the history too, as --run would time it
            logs["seconds"] = max(0.0, logs["seconds"] - (self.control.paused - self._held))
        self.q.put(("epoch", dict(logs)))


def child_main(project_dict, path, epochs, batch_size, device, q, stop, pause, resume=None,
               initial=None):
    """resume: (weights, training state as bytes) of a stopped run, to continue it exactly;
    initial: {name: array} to start from (a project with frozen layers starts from the
    document's weights), the other weights initialised."""
    if hasattr(os, "nice"):
        try:
            os.nice(10)  # the window first
        except OSError:
            pass
    from layerloom.project import loom as projectfile
    from layerloom.core.errors import LayerloomError
    try:
        from layerloom.train.session import Session
        from layerloom.data.prepare import prepare_data
        project = projectfile.from_dict(project_dict, path)
        words = ProgressWords()  # the words `layerloom --run` prints, with rate and time left
        # Stop while the data is read or the model built: checked at each progress call
        progress = cancellable(lambda url, done, total, unit="bytes": q.put(
            ("status", words.line(url, done, total, unit))), stop.is_set)

        should_stop = Control(stop, pause)

        data = prepare_data(project, progress=progress)
        _check(stop)  # a Stop during the read's last block
        q.put(("fitted", data.fitted))
        state = None
        if resume is not None:
            from layerloom.train.state import TrainingState
            state = TrainingState.from_bytes(resume[1])
            state.check_weights(resume[0])
        session = Session(project, device=device, batch_size=batch_size,
                          initial_weights=resume[0] if resume is not None else initial)
        _check(stop)  # a Stop while the model was built
        h = session.fit(data, epochs=epochs, callbacks=[_Sender(q, should_stop)],
                        should_stop=should_stop,
                        resume=state)
        q.put(("weights", session.model.get_weights()))  # after Stop too: whole batches only
        q.put(("state", session.training_state().to_bytes()))
        h.update(device=session.runtime.describe(), parameters=session.model.param_count(),
                 batch_size=session.batch_size, seed=session.seed)
        q.put(("done", h))
        if not h.get("stopped"):
            from layerloom.train.evaluation import output_results
            r = output_results(session, data)
            if r is not None:
                q.put(("results", r))
    except Cancelled:
        q.put(("status", "Stopped while reading the data; nothing was trained or written."))
    except LayerloomError as e:
        q.put(("failed", str(e)))
    except Exception as e:  # reported in the window's log
        q.put(("failed", f"training failed: {type(e).__name__}: {e}\n"
                         + traceback.format_exc(limit=3)))
    q.put(("end", None))


def start(project_dict, path, epochs, batch_size, device, resume=None, initial=None):
    """(process, queue, stop event, pause event); the process is started."""
    ctx = mp.get_context("spawn")  # no fork of a process that holds Qt and OpenCL state
    q, stop, pause = ctx.Queue(), ctx.Event(), ctx.Event()
    p = ctx.Process(target=child_main, args=(project_dict, path, epochs, batch_size, device,
                                             q, stop, pause, resume, initial), daemon=True)
    p.start()
    return p, q, stop, pause
