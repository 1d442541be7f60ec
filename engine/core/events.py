"""Plain-Python events: the graph model announces changes; views subscribe. No Qt here."""


class Event:
    def __init__(self, name):
        self.name = name
        self._handlers = []

    def connect(self, handler):
        self._handlers.append(handler)
        return handler

    def disconnect(self, handler):
        self._handlers.remove(handler)

    def emit(self, *args):
        for handler in list(self._handlers):
            handler(*args)


class KernelBuild:
    """One OpenCL program build, as the runtime announces it (backend/runtime.py
    `Runtime.compiling`): the n-th build of m known so far (m grows when a model asks for a
    program nobody built ahead), what (the kernel files and defines), seconds once it ended
    (None on the event sent as it starts), cached: built before on this device and driver,
    so a driver's binary cache serves it (a load, not a compile), and background: built in
    a background thread (Runtime.prebuild) rather than where a layer waits for it."""
    __slots__ = ("n", "m", "what", "seconds", "cached", "background")

    def __init__(self, n, m, what, seconds=None, cached=False, background=False):
        self.n, self.m, self.what = n, m, what
        self.seconds, self.cached, self.background = seconds, cached, background

    @property
    def started(self):
        return self.seconds is None

    def __repr__(self):
        state = "building" if self.started else f"{self.seconds:.2f} s" + (
            ", cached" if self.cached else "")
        return f"KernelBuild({self.n} of {self.m}: {self.what}, {state})"
