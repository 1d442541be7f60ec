"""OpenCL runtime: device discovery and choice, one context and in-order queue, programs built
once per (source, options) and kernel objects kept (a `prg.name` lookup makes a new kernel each
time, ~60x slower per launch)."""
import os
import re

import numpy as np

from .errors import DeviceError

ENV_VAR = "LAYERLOOM_DEVICE"


def _cl():
    import pyopencl as cl
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


def choose_device(spec=None):
    """Pick a device. spec: None (use $LAYERLOOM_DEVICE, else GPU first, else CPU), 'gpu', 'cpu',
    'P:D' (platform and device index as printed by --list-devices), or part of a device name."""
    found = list_devices()
    source = "--device"
    if spec is None:
        spec = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if not found:
        raise DeviceError("no OpenCL device found; install the CPU driver with "
                          "pip install \"pyopencl[pocl]\" or a GPU vendor's OpenCL driver")
    if spec is None or spec == "auto":
        return min(found, key=lambda f: (_KIND_RANK[device_kind(f[3])], f[0], f[1]))[3]
    s = str(spec).strip()
    if s.lower() in ("gpu", "cpu", "accelerator"):
        match = [f for f in found if device_kind(f[3]) == s.lower()]
    elif ":" in s and all(part.isdigit() for part in s.split(":", 1)):
        p, d = (int(x) for x in s.split(":", 1))
        match = [f for f in found if f[0] == p and f[1] == d]
    else:
        match = [f for f in found if s.lower() in f[3].name.lower()
                 or s.lower() in f[2].name.lower()]
    if not match:
        avail = "; ".join(f"{f[0]}:{f[1]} {f[3].name.strip()}" for f in found)
        raise DeviceError(f"no OpenCL device matches {s!r} (from {source}); available: {avail}")
    return match[0][3]


def opencl_c_version(dev):
    """(major, minor) of the OpenCL C the device compiles ("OpenCL C 1.2 pocl" -> (1, 2))."""
    m = re.search(r"OpenCL C (\d+)\.(\d+)", dev.opencl_c_version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (1, 0)


class Runtime:
    """A device with its context, in-order queue and program/kernel caches."""

    # added to every build; the tests set ("-Werror",) (conftest.py): a warning fails there
    extra_build_options = ()

    def __init__(self, device=None):
        cl = _cl()
        self.cl = cl
        self.device = device if device is not None and not isinstance(device, str) \
            else choose_device(device)
        self.ctx = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.ctx)
        self.kind = device_kind(self.device)
        self._programs = {}
        self._kernels = {}
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
        return f"{self.name} ({self.kind}, {self.device.platform.name.strip()})"

    def program(self, files, defines=(), prelude=""):
        """Build (once) a program from clkernels files, with -D defines."""
        import clkernels
        key = (tuple(files), tuple(defines), prelude)
        prg = self._programs.get(key)
        if prg is None:
            src = prelude + "\n".join(clkernels.source(f) for f in files)
            opts = [f"-D{d}" for d in defines] + self.build_options()
            prg = self.cl.Program(self.ctx, src).build(options=opts)
            self._programs[key] = prg
        return prg

    def kernel(self, files, name, scalar_types, defines=(), prelude=""):
        """A kept cl.Kernel with scalar argument types set (None for buffers)."""
        key = (tuple(files), name, tuple(defines), prelude)
        k = self._kernels.get(key)
        if k is None:
            k = getattr(self.program(files, defines, prelude), name)
            k.set_scalar_arg_dtypes(scalar_types)
            self._kernels[key] = k
            self._types[id(k)] = scalar_types
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
