"""Exit at once on Ctrl-C or SIGTERM, with one line: the handler the `layerloom` command sets
before it imports anything heavy (launch.py), and the one the data read falls back to when no
progress call comes (run.py). Its own module, importing nothing of Layerloom, so both can use
it without a circle (launch -> main -> run)."""
import os
import signal

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
