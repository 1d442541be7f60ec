"""The `layerloom` command's entry point. It imports nothing heavy before the signal handlers
are set: a Ctrl-C or SIGTERM while numpy, pyopencl and Qt load, the data is read or the model
is built (the first seconds) is one line and exit 130 or 143, not a traceback of the import
machinery. Training installs its own handlers (it stops after the batch and writes its
outputs); the editor its own (Qt's default: Ctrl-C ends it; the autosave keeps the work)."""
import os
import signal
import sys

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _stop(signum, frame):
    """Exit at once, with one line. Not an exception: one raised into an import can be
    swallowed (a library's `except BaseException`, a callback whose exceptions Python drops)
    or turned into an ImportError with a traceback (numpy's C modules), and then the run went
    on or printed pages. Nothing is half-written: every file Layerloom writes is written to a
    temporary name and renamed into place."""
    if signum == signal.SIGTERM:
        text, code = "terminated (SIGTERM); nothing written", EXIT_TERMINATED
    else:
        text, code = "interrupted; nothing written", EXIT_INTERRUPTED
    try:
        os.write(2, f"layerloom: {text}\n".encode())  # not sys.stderr: it may be mid-write
    finally:
        os._exit(code)


def main():
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from .main import main as cli_main
    code = cli_main()
    # a second signal while the interpreter shuts down must not print a traceback
    # (threading._shutdown)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
