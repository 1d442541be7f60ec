"""OpenCL runtime: device discovery and choice, one context and in-order queue, programs built
once per (source, options) and kernel objects kept (a `prg.name` lookup makes a new kernel each
time, ~60x slower per launch).

Builds: a program is built on first use, or ahead of it by `prebuild` in background threads
(a CLI run starts the programs nearly every model needs while its data loads); a program
asked for while it builds elsewhere is waited for, never built twice. Each build is announced
on `Runtime.compiling` (core/events.py KernelBuild: n of m, what, seconds, whether it was
built before), which the CLI prints as "Compiling kernels (n of m)". Compiled binaries are
kept across runs by the drivers: PoCL's own cache (POCL_CACHE_DIR, else
$XDG_CACHE_HOME/pocl, keyed by the device and the source with its options; pyopencl leaves
PoCL's builds to it) and pyopencl's for other drivers (under $XDG_CACHE_HOME/pytools, keyed
by the device, its driver version and the source with its options). Which programs were built
before on this device and driver is kept beside the device probe (BUILT_FILE, one hash per
line), so a build the drivers' caches will serve is not said as compiling."""
import concurrent.futures
import dataclasses
import hashlib
import os
import re
import threading
import time
import warnings

import numpy as np

from layerloom.backend import capabilities, drivers, signatures
from layerloom.core.errors import DeviceError, DriverError
from layerloom.core.events import Event, KernelBuild

ENV_VAR = "LAYERLOOM_DEVICE"


_drivers_registered = False


def _cl():
    global _drivers_registered
    if not _drivers_registered:  # before the loader is first asked for platforms
        _drivers_registered = True
        drivers.register_pip_drivers()
    import pyopencl as cl
    # pyopencl warns of any compiler output, which Intel's runtime prints on every build
    # ("Compilation started"): ignored process-wide, once. (A catch_warnings() around each
    # build, as before, is not thread-safe: a build in a background thread, prebuild, printed
    # the warning on stderr now and then.) A warning that matters fails the tests' -Werror
    # builds, and an error reaches build_source as the compiler's log.
    warnings.filterwarnings("ignore", category=cl.CompilerWarning)
    return cl


def list_devices():
    """[(platform_index, device_index, platform, device)] for every OpenCL device found."""
    cl = _cl()
    out = []
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        return out
    for pi, plat in enumerate(platforms):
        try:
            devs = plat.get_devices()
        except cl.Error:
            continue
        for di, dev in enumerate(devs):
            out.append((pi, di, plat, dev))
    return out


def device_kind(dev):
    cl = _cl()
    if dev.type & cl.device_type.GPU:
        return "gpu"
    if dev.type & cl.device_type.ACCELERATOR:
        return "accelerator"
    if dev.type & cl.device_type.CPU:
        return "cpu"
    return "other"


_KIND_RANK = {"gpu": 0, "accelerator": 1, "cpu": 2, "other": 3}


def describe_device(plat, dev):
    """'name (kind, platform driver-version)': which driver, where several serve one CPU."""
    pname, drv = plat.name.strip(), (dev.driver_version or "").strip()
    if drv.lower().startswith(pname.lower()):
        drv = drv[len(pname):].strip()
    return f"{dev.name.strip()} ({device_kind(dev)}, {pname} {drv})".replace(" )", ")")


def _spec_text(plat, dev):
    return f"{dev.name} {plat.name} {plat.version}".lower()


@dataclasses.dataclass
class Choice:
    """A found device and what the default choice made of it: caps (None where not probed),
    why (a few words: why it is, or is not, the default)."""
    pi: int
    di: int
    plat: object
    dev: object
    caps: object = None
    why: str = ""
    default: bool = False

    @property
    def software(self):
        """'simulator', 'software' (a software rasteriser's OpenCL) or '' (a real device)."""
        return capabilities.software_kind(self.plat, self.dev)


# Within this share of the fastest probed GEMM, a CPU device whose compiler takes wider vectors
# is preferred: on an AMD Zen 4 the bundled PoCL 3.0 (znver3, 8-wide) timed its GEMM at 123
# GFLOP/s and Debian's PoCL 3.1 (AVX-512, 16-wide) at 122, and 3.1 trained the example CNN in
# 8.4 s an epoch against 14.1 (the MLP 0.58 against 0.70): the probe's one GEMM does not see
# the convolutions, poolings and elementwise kernels, which run at the vector width on CPUs.
LIKE_GEMM = 0.85
LIKE_GEMM_WORDS = f"{100 - round(100 * LIKE_GEMM)}%"  # as --list-devices says it


def _best(usable):
    """The default among usable choices: the fastest GEMM, or where that is a CPU's, the CPU
    with the widest vectors among those within LIKE_GEMM of it (then the fastest GEMM). Only
    CPU kernels run at the vector width; with no GEMM timed, the first. Returns (best, whether
    the width decided)."""
    if not usable:
        return None, False
    fastest = max(usable, key=lambda c: c.caps.gflops or 0.0)
    if device_kind(fastest.dev) != "cpu" or not fastest.caps.gflops:
        return fastest, False
    like = [c for c in usable if device_kind(c.dev) == "cpu"
            and (c.caps.gflops or 0.0) >= LIKE_GEMM * fastest.caps.gflops]
    best = max(like, key=lambda c: (c.caps.vector_width, c.caps.gflops))
    return best, best.caps.vector_width > fastest.caps.vector_width


def survey(probe_all=False, probe=None):
    """Every device with the default's reasoning: a real GPU first, then an accelerator,
    then the CPU, and within each kind the fastest that works (its GEMM, timed by the
    capabilities probe; among CPUs within LIKE_GEMM of the fastest, the widest vectors: _best);
    never a simulator (Oclgrind, llvmpipe). Devices past the chosen kind are probed only with
    probe_all (--list-devices)."""
    probe = probe or capabilities.of
    found = [Choice(*f) for f in list_devices()]
    chosen = None
    for rank in sorted({_KIND_RANK[device_kind(c.dev)] for c in found}):
        group = [c for c in found if _KIND_RANK[device_kind(c.dev)] == rank
                 and not c.software]
        if chosen is not None and not probe_all:
            break
        for c in group:
            c.caps = probe(c.plat, c.dev)
        usable = [c for c in group if c.caps.usable]
        best, by_width = _best(usable)
        for c in group:
            if not c.caps.usable:
                c.why = c.caps.describe()
            elif chosen is not None:
                c.why = f"works ({c.caps.describe()}); a {device_kind(chosen.dev)} comes first"
            elif c is best:
                kind = device_kind(c.dev)
                c.why = (f"the default: the only {kind} that works ({c.caps.describe()})"
                         if len(usable) == 1 else
                         f"the default: the {kind} that works ({c.caps.describe()}) with the "
                         f"widest vectors, its GEMM within {LIKE_GEMM_WORDS} of the fastest"
                         if by_width else
                         f"the default: the fastest {kind} that works ({c.caps.describe()})")
            elif by_width and c.caps.vector_width < best.caps.vector_width and \
                    (c.caps.gflops or 0.0) >= (best.caps.gflops or 0.0):
                c.why = (f"works ({c.caps.describe()}); {best.pi}:{best.di} has wider vectors "
                         f"and a GEMM within {LIKE_GEMM_WORDS}, so it comes first")
            else:
                c.why = (f"works ({c.caps.describe()}), slower than "
                         f"{best.pi}:{best.di}")
        if best is not None and chosen is None:
            best.default, chosen = True, best
    for c in found:
        if c.software:
            what = "a simulator" if c.software == "simulator" else "a software renderer's device"
            c.why = (f"{what}, hundreds of times slower: never the default "
                     f"(use --device {c.pi}:{c.di})")
        elif not c.why:
            c.why = f"not probed: a {device_kind(chosen.dev)} comes first" if chosen else ""
    return found


def choose_device(spec=None, probe=None):
    """Pick a device. spec: None (use $LAYERLOOM_DEVICE, else the default of survey()), 'gpu',
    'cpu', 'P:D' (platform and device index as printed by --list-devices), or part of the
    device's name or its platform's name and version ('pocl 3.1'). Where the spec matches
    several devices that work, the same rule as the default's picks one (_best)."""
    probe = probe or capabilities.of
    found = list_devices()
    source = "--device"
    if spec is None:
        spec = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if not found:
        raise DeviceError("no OpenCL device found; install the CPU driver with "
                          "pip install \"pyopencl[pocl]\" or a GPU vendor's OpenCL driver")
    if spec is None or spec == "auto":
        choices = survey(probe=probe)
        for c in choices:
            if c.default:
                return c.dev
        reasons = "; ".join(f"{c.pi}:{c.di} {c.dev.name.strip()}: {c.why}" for c in choices)
        hint = f"; {drivers.HINT}" if any("compiler" in c.why for c in choices) else ""
        raise DeviceError(f"no OpenCL device that works was found ({reasons}){hint}; a "
                          "simulator is used only when named with --device")
    s = str(spec).strip()
    if s.lower() in ("gpu", "cpu", "accelerator"):
        match = [f for f in found if device_kind(f[3]) == s.lower()
                 and not capabilities.is_simulator(f[2], f[3])]
    elif ":" in s and all(part.isdigit() for part in s.split(":", 1)):
        p, d = (int(x) for x in s.split(":", 1))
        match = [f for f in found if f[0] == p and f[1] == d]
    else:
        match = [f for f in found if s.lower() in _spec_text(f[2], f[3])]
    if not match:
        avail = "; ".join(f"{f[0]}:{f[1]} {describe_device(f[2], f[3])}" for f in found)
        raise DeviceError(f"no OpenCL device matches {s!r} (from {source}); available: {avail}")
    if len(match) == 1:
        return match[0][3]
    caps = [(probe(f[2], f[3]), f) for f in match]
    usable = [(c, f) for c, f in caps if c.usable]
    if not usable:
        return match[0][3]  # Runtime says why it cannot be used
    return _best([Choice(*f, caps=c) for c, f in usable])[0].dev


def opencl_c_version(dev):
    """(major, minor) of the OpenCL C the device compiles ("OpenCL C 1.2 pocl" -> (1, 2))."""
    m = re.search(r"OpenCL C (\d+)\.(\d+)", dev.opencl_c_version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (1, 0)


def _probe_capabilities(device):
    return capabilities.of(device.platform, device)


def _has_kernel(prg, name):
    try:
        return name in prg.kernel_names.split(";")
    except Exception:  # a driver that cannot say: the kernel lookup will find out
        return True


def _build_log(text):
    """The compiler's log from pyopencl's build error (its text follows 'Build on <device>:')."""
    m = re.search(r"Build on [^\n]*:\n", text)
    log = text[m.end():] if m else text
    return log.split("\n(options:")[0].strip()


BUILT_FILE = "built_programs.txt"


def _built_path():
    return os.path.join(os.path.dirname(capabilities.cache_path()), BUILT_FILE)


def _read_built():
    try:
        with open(_built_path(), encoding="ascii") as f:
            return {line.strip() for line in f}
    except (OSError, ValueError):
        return set()


def _program_id(device, src, options):
    """A program's identity on a device and driver: what the drivers' caches key it by."""
    h = hashlib.sha256()
    for part in (device.platform.name, device.platform.version, device.name,
                 device.driver_version, " ".join(options), src):
        h.update(part.encode("utf-8", "replace") + b"\0")
    return h.hexdigest()[:24]


def _source(files, prelude=""):
    """The text a program is built from: the prelude, then clkernels/<file>.cl in order."""
    from layerloom import clkernels
    return prelude + "\n".join(clkernels.source(f) for f in files)


class Runtime:
    """A device with its context, in-order queue and program/kernel caches."""

    # added to every build; the tests set ("-Werror",) (conftest.py): a warning fails there
    extra_build_options = ()

    def __init__(self, device=None, capabilities=None):
        """device: a pyopencl Device, or a spec for choose_device. capabilities: what the
        device's compiler takes (engine/backend/capabilities.py); probed, or read from its cache,
        when not given. A device the probe found unusable is refused with the reason."""
        cl = _cl()
        self.cl = cl
        self.device = device if device is not None and not isinstance(device, str) \
            else choose_device(device)
        self.caps = capabilities or _probe_capabilities(self.device)
        if not self.caps.usable:
            raise DeviceError(f"{self.describe()} cannot be used: {self.caps.problem}")
        self.ctx = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.ctx)
        self.kind = device_kind(self.device)
        self._programs = {}
        self._kernels = {}
        # builds: one lock over the program cache and the build bookkeeping
        self._lock = threading.Lock()
        self._building = {}  # key -> threading.Event, set when the build there ends
        self._queued = {}  # key -> (files, defines, prelude): prebuild's, not started yet
        self._pool = None  # prebuild's threads, started on first use
        self._started = 0  # builds started in this runtime (the n of "n of m")
        self.builds = []  # KernelBuild of every finished build, in the order they ended
        self.compiling = Event("compiling")  # emit(KernelBuild) as each build starts and ends
        self._built = None  # ids of the programs built before on this device (BUILT_FILE)
        self._signatures = {}  # (files, prelude) -> {kernel: argument types}, from the source
        self._types = {}  # id of a kept kernel -> its scalar argument types

    def build_options(self):
        """Options of every program: OpenCL C 1.2, the language the kernels are written in (a
        compiler left to choose takes its newest 1.x; PoCL's and other vendors' differ), and
        denormals flushed."""
        std = ["-cl-std=CL1.2"] if opencl_c_version(self.device) >= (1, 2) else []
        return std + ["-cl-denorms-are-zero"] + list(self.extra_build_options)

    @property
    def name(self):
        return self.device.name.strip()

    def describe(self):
        return describe_device(self.device.platform, self.device)

    def build_source(self, src, options, what):
        """A built cl.Program from source text; a refused build is a DriverError naming the
        device and `what`, with the compiler's log."""
        try:  # (pyopencl's CompilerWarning is ignored process-wide: _cl())
            return self.cl.Program(self.ctx, src).build(
                options=list(options) + self.build_options())
        except self.cl.Error as e:
            raise DriverError(f"the OpenCL compiler refused {what}", self.describe(),
                              _build_log(str(e))) from None

    def program(self, files, defines=(), prelude="", fresh=False):
        """Build (once) a program from clkernels files, with -D defines. fresh: bypass the
        drivers' binary caches (PoCL's, pyopencl's) with a define of its own. Thread-safe: a
        program building in another thread (prebuild) is waited for; one prebuild queued but
        not started is built here at once."""
        key = (tuple(files), tuple(defines), prelude)
        if fresh:
            return self._build(key, fresh=True)
        while True:
            with self._lock:
                prg = self._programs.get(key)
                if prg is not None:
                    return prg
                done = self._building.get(key)
                if done is None:
                    self._queued.pop(key, None)
                    done = self._building[key] = threading.Event()
                    break
            done.wait()  # built elsewhere; if that build failed, build it here (its error)
        return self._claimed_build(key, done)

    def _claimed_build(self, key, done):
        """Build a program this thread claimed (its `done` in _building), then release it."""
        try:
            return self._build(key)
        finally:
            with self._lock:
                del self._building[key]
            done.set()

    def _build(self, key, fresh=False):
        files, defines, prelude = key
        what = f"{'+'.join(files)}.cl" + (f" with {' '.join(defines)}" if defines else "")
        src = _source(files, prelude)
        opts = [f"-D{d}" for d in defines]
        if fresh:
            opts.append(f"-DLAYERLOOM_FRESH_BUILD={time.time_ns()}")
        pid = _program_id(self.device, src, opts + self.build_options())
        with self._lock:
            if self._built is None:
                self._built = _read_built()
            known = pid in self._built and not fresh
            self._started += 1
            n, m = self._started, self._started + len(self._queued)
        background = threading.current_thread() is not threading.main_thread()
        self.compiling.emit(KernelBuild(n, m, what, None, known, background))
        t0 = time.perf_counter()
        prg = self.build_source(src, opts, what)
        done = KernelBuild(n, m, what, time.perf_counter() - t0, known, background)
        with self._lock:
            self._programs[key] = prg
            self.builds.append(done)
            if not known and not fresh:
                self._built.add(pid)
                self._remember(pid)
        self.compiling.emit(done)
        return prg

    @staticmethod
    def _remember(pid):
        """Add a program's id to BUILT_FILE (a line appended; a cache that cannot be written
        only makes the next run say its builds again)."""
        path = _built_path()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="ascii") as f:
                f.write(pid + "\n")
        except OSError:
            pass

    def prebuild(self, specs):
        """Start building programs a model will ask for, in background threads: specs of
        (files, defines, prelude) as `program` takes them. Threads: one fewer than the CPU's
        cores (1 to 4), the main thread loading data meanwhile (on 2 loaded cores, two
        build threads made the MLP's cold run ~1.5 s longer, one ~3 s shorter). Returns at
        once; `program` waits for one still building, and builds one still queued itself. A
        failed build here is left for `program` to raise where it is used."""
        todo = []
        with self._lock:
            for files, defines, prelude in specs:
                key = (tuple(files), tuple(defines), prelude)
                if key not in self._programs and key not in self._building \
                        and key not in self._queued:
                    self._queued[key] = key
                    todo.append(key)
            if todo and self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(1, min(4, (os.cpu_count() or 2) - 1)),
                    thread_name_prefix="layerloom-build")
        return [self._pool.submit(self._prebuild_one, key) for key in todo]

    def _prebuild_one(self, key):
        with self._lock:
            if self._queued.pop(key, None) is None:
                return  # taken by program() already
            done = self._building[key] = threading.Event()
        try:
            self._claimed_build(key, done)
        except Exception:  # noqa: BLE001 - program() builds it again and raises there
            pass

    def wait_for_builds(self):
        """Wait until every prebuild has ended (its threads are kept for later ones)."""
        while True:
            with self._lock:
                pending = list(self._building.values())
                if not pending and not self._queued:
                    return
            for done in pending:
                done.wait()
            if not pending:
                time.sleep(0.01)

    def arg_types(self, files, name, prelude=""):
        """Kernel `name`'s argument types as its signature in the source declares them
        (backend/signatures.py): a numpy scalar type per scalar, None per buffer."""
        key = (tuple(files), prelude)
        kernels = self._signatures.get(key)
        if kernels is None:
            kernels = self._signatures[key] = signatures.parse(_source(files, prelude))
        if name not in kernels:
            raise DriverError(f"{'+'.join(files)}.cl declares no kernel {name!r}", self.describe())
        return kernels[name]

    def kernel(self, files, name, defines=(), prelude=""):
        """A kept cl.Kernel with its scalar argument types set from its signature. A program
        that lacks the kernel (a cached binary from a build that crashed) is built afresh."""
        key = (tuple(files), name, tuple(defines), prelude)
        k = self._kernels.get(key)
        if k is None:
            prg = self.program(files, defines, prelude)
            if not _has_kernel(prg, name):
                prg = self.program(files, defines, prelude, fresh=True)
                if not _has_kernel(prg, name):
                    raise DriverError(f"the build of {'+'.join(files)}.cl has no kernel "
                                      f"{name!r}", self.describe())
            types = self.arg_types(files, name, prelude)
            k = self.cl.Kernel(prg, name)
            k.set_scalar_arg_dtypes(types)
            self._kernels[key] = k
            self._types[id(k)] = types
        return k

    def bind(self, k, args):
        """A copy of kept kernel k with its arguments set once, for a launch repeated with the
        same arguments (a layer's GEMM every step): enqueueing it skips converting and setting
        each argument again. The caller keeps the buffers in args alive."""
        c = self.cl.Kernel(k.program, k.function_name)
        c.set_scalar_arg_dtypes(self._types[id(k)])
        c.set_args(*args)
        return c

    def enqueue(self, k, grid, local):
        """Launch a bound kernel (bind) on the queue."""
        self.cl.enqueue_nd_range_kernel(self.queue, k, grid, local)

    # -- buffers ---------------------------------------------------------------------
    def empty(self, nbytes):
        mf = self.cl.mem_flags
        return self.cl.Buffer(self.ctx, mf.READ_WRITE, max(int(nbytes), 4))

    def to_device(self, array, dtype=np.float32):
        """A new buffer holding `array` as float32 (or int32 for index maps)."""
        a = np.ascontiguousarray(array, dtype=dtype)
        buf = self.empty(a.nbytes)
        if a.size:
            self.cl.enqueue_copy(self.queue, buf, a)
        return buf

    def write(self, buf, array, blocking=False):
        a = np.ascontiguousarray(array, dtype=np.float32)
        return self.cl.enqueue_copy(self.queue, buf, a, is_blocking=blocking)

    def read(self, buf, count, shape=None):
        out = np.empty(count, dtype=np.float32)
        if count:
            self.cl.enqueue_copy(self.queue, out, buf)
        return out.reshape(shape) if shape is not None else out

    def finish(self):
        self.queue.finish()
