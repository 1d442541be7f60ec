"""The `layerloom` command's entry point. It imports nothing heavy before the signal handlers
are set: a Ctrl-C or SIGTERM while numpy, pyopencl and Qt load, the data is read or the model
is built (the first seconds) is one line and exit 130 or 143, not a traceback of the import
machinery. Training installs its own handlers (it stops after the batch and writes its
outputs); the editor its own (Qt's default: Ctrl-C ends it; the autosave keeps the work)."""
import signal
import sys

from .signals import _stop


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
