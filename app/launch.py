"""The `layerloom` command's entry point. It imports nothing heavy before the signal handlers
are set: a Ctrl-C or SIGTERM while numpy, pyopencl and Qt load (the first fraction of a
second) is one line and exit 130 or 143, not a traceback of the import machinery."""
import signal
import sys

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(BaseException):
    """SIGTERM outside training (which stops after its batch instead): exit 143."""


# the signals already turned into an exception: one is enough. A second Ctrl-C while the first
# unwinds the imports would land in the import machinery's cleanup ("Exception ignored in ...
# _ModuleLock"), or in the except block that reports the first, and the process would die by
# SIGINT instead of exiting 130. Setting SIG_IGN alone is not enough: two signals close together
# can both be pending when Python runs its handlers.
_stopping = []


def _stop_once(signum, exc):
    signal.signal(signum, signal.SIG_IGN)
    if not _stopping:
        _stopping.append(signum)
        raise exc


def _terminated(signum, frame):
    _stop_once(signum, Terminated())


def _interrupted(signum, frame):
    _stop_once(signum, KeyboardInterrupt())


def main():
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _interrupted)
    try:
        from .cli import main as cli_main
        code = cli_main()
    except KeyboardInterrupt:  # Ctrl-C while starting up (imports, reading data)
        sys.stderr.write("layerloom: interrupted before training started; nothing written\n")
        code = EXIT_INTERRUPTED
    except Terminated:
        sys.stderr.write("layerloom: terminated (SIGTERM) before training started; nothing "
                         "written\n")
        code = EXIT_TERMINATED
    # a second signal while the interpreter shuts down must not print a traceback
    # (threading._shutdown)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
