"""Training progress on a console: one line per epoch (Keras' verbose=2) and a live bar when the
output is a terminal. Used by `layerloom --run` and the Python API's fit."""
import sys

from layerloom.train.fit import NOT_FIGURES, Callback


def _fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def metrics_text(logs, skip=NOT_FIGURES):
    return "  ".join(f"{k} {_fmt(v)}" for k, v in logs.items() if k not in skip)


class ConsoleProgress(Callback):
    """One line per epoch; a live progress bar too when stdout is a terminal."""

    def __init__(self, epochs, out=None):
        out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
        self.epochs, self.out = epochs, out
        self.tty = out.isatty()
        self.width = len(str(epochs))

    def on_batch_end(self, epoch, batch, num_batches, logs):
        if not self.tty or logs is None:
            return
        done = int(24 * batch / num_batches)
        bar = "=" * done + (">" if done < 24 else "") + "." * (23 - done)
        line = (f"Epoch {epoch:>{self.width}}/{self.epochs} [{bar}] {batch}/{num_batches}  "
                + metrics_text(logs))
        self.out.write("\r" + line[:150] + "\x1b[K")
        self.out.flush()

    def on_epoch_end(self, epoch, logs):
        if self.tty:
            self.out.write("\r\x1b[K")
        self.out.write(f"Epoch {epoch:>{self.width}}/{self.epochs}  {metrics_text(logs)}  "
                       f"{logs['seconds']:.2f}s" + ("  (stopped)" if logs.get("interrupted")
                                                    else "") + "\n")
        self.out.flush()
