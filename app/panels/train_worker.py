"""The training dock's threads: TrainWorker starts the training process and turns its messages
into Qt signals; DeviceSurvey lists the OpenCL devices off the GUI thread."""
from PySide6.QtCore import QThread, Signal


class TrainWorker(QThread):
    """Starts the training process (layerloom.cli.train_process, engine/cli/train_process.py) and turns its messages into
    signals on the GUI thread. Stop and Pause are shared events the child checks after every
    batch, so Pause holds the model between two batches and Stop leaves it consistent."""
    sigBegin = Signal(int, int)
    sigBatch = Signal(int, int, int, dict)
    sigEpoch = Signal(dict)
    sigDone = Signal(dict)
    sigResults = Signal(object)
    sigFailed = Signal(str)
    sigStatus = Signal(str)

    def __init__(self, project_dict, path, epochs, batch_size, device, resume=None,
                 initial=None):
        """project_dict: the project as loom.to_dict gave it, which the child parses (the
        panel serialises a Start's project once and checks it before)."""
        super().__init__()
        self.project_dict, self.path = project_dict, path
        self.epochs, self.batch_size, self.device = epochs, batch_size, device
        self.resume = resume  # (weights, training state bytes) of the run this continues
        self.initial = initial  # {name: array} a new run starts from (None: initialised)
        self.state = None  # the training state as the run left it
        self.fitted = None  # normalisation and categories fitted on the training rows
        self.weights = None  # {name: array} as the run left them
        self.process = None
        self._stop = self._pause = None

    @property
    def paused(self):
        return self._pause is not None and self._pause.is_set()

    def request_stop(self):
        if self._stop is not None:
            self._stop.set()

    def set_paused(self, paused):
        if self._pause is not None:
            (self._pause.set if paused else self._pause.clear)()

    def run(self):
        import queue as queue_mod
        from layerloom.cli import train_process
        try:
            self.process, q, self._stop, self._pause = train_process.start(
                self.project_dict, self.path, self.epochs, self.batch_size, self.device,
                self.resume, self.initial)
        except Exception as e:
            self.sigFailed.emit(f"could not start training: {type(e).__name__}: {e}")
            return
        emit = {"begin": lambda v: self.sigBegin.emit(*v), "batch": lambda v: self.sigBatch.emit(*v),
                "epoch": self.sigEpoch.emit, "done": self.sigDone.emit,
                "results": self.sigResults.emit, "failed": self.sigFailed.emit,
                "status": self.sigStatus.emit}
        while True:
            try:
                kind, value = q.get(timeout=0.2)
            except queue_mod.Empty:
                if not self.process.is_alive():
                    self.sigFailed.emit(f"the training process ended unexpectedly (exit code "
                                        f"{self.process.exitcode}); the project is unchanged")
                    break
                continue
            if kind == "end":
                break
            if kind == "fitted":
                self.fitted = value
                continue
            if kind == "weights":
                self.weights = value
                continue
            if kind == "state":
                self.state = value
                continue
            emit[kind](value)
        self.process.join(5)


def short_name(choice):
    """What the Device box's auto entry names: a GPU by its model, a CPU by its driver (one CPU
    may have several: 'PoCL 3.1+debian (cpu)')."""
    from layerloom.backend.runtime import device_kind
    kind = device_kind(choice.dev)
    if kind != "cpu":
        return f"{choice.dev.name.strip()} ({kind})"
    name = choice.plat.name.strip()
    name = "PoCL" if name == "Portable Computing Language" else name
    return f"{name} {choice.dev.driver_version.strip()} (cpu)"


class DeviceSurvey(QThread):
    """layerloom.backend.runtime.survey() off the GUI thread: the first time on a machine each device is
    probed in a child process (seconds); afterwards it is read from the probe's cache."""
    sigFound = Signal(object)

    def run(self):
        try:
            from layerloom.backend.runtime import survey
            self.sigFound.emit(survey(probe_all=True))
        except Exception as e:  # no OpenCL at all
            self.sigFound.emit(str(e) or type(e).__name__)
