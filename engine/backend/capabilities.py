"""What a device's OpenCL compiler really takes, found by a probe and kept in a cache.

A device's advertised vector widths are not what its compiler targets. PoCL 3.0 (LLVM 14) on
an AMD Zen 4 CPU advertises preferred_vector_width_float 16 (the CPU has AVX-512) but compiles
for znver3, without AVX-512: float16 code warns "changes the ABI" and the compiler can crash.
Intel's CPU runtime advertises a preferred width of 1 (it vectorises across work-items), while
16-wide register tiles run its GEMM 2.5x faster than 4-wide ones.

So each device is probed once per driver and kernel version, in a child process
(probe_child.py, which needs a Runtime; capabilities.py sits below runtime.py), so that a
compiler that crashes takes the child down and not the caller: a tiny program per float vector
width (4, 8, 16) is built with -Werror and run against numpy; then Layerloom's kernel library
and a GEMM with the chosen register tile are built and checked exactly, and the GEMM is timed
(the default device is the fastest one that works; among CPUs with GEMMs within 15%, the one
with the widest vectors: runtime._best). If the child dies, the stage it had
started is known: a width whose build crashed is dropped and the rest is probed again; a crash
in the library makes the device unusable, with the reason. The answers are kept in
<cache>/devices.json (LAYERLOOM_CACHE_DIR, else $XDG_CACHE_HOME/layerloom, else
~/.cache/layerloom), keyed by the device, its driver and the kernel sources.
"""
import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

WIDTHS = (4, 8, 16)
PROBE_VERSION = 2  # bump when what the probe checks changes
TIMEOUT_S = 600  # a first build on the slowest implementation (Mesa's llvmpipe) takes minutes
SOFTWARE = ("llvmpipe", "softpipe", "swiftshader")  # software rasterisers' OpenCL

# a function of vector arguments (what broke on PoCL 3.0 for Zen 4) and library calls on them
_WIDTH_PROBE = """
#define T float{w}
T probe_f(const T x) {{ return tanh(x) + exp(-x * x) * (x > 0.5f ? x : (T)(0.5f)); }}
__kernel void probe(__global const float* x, __global float* y) {{
    const int i = get_global_id(0);
    vstore{w}(probe_f(vload{w}(i, x)), i, y);
}}
"""


def _probe_reference(x):
    import numpy as np
    return np.tanh(x) + np.exp(-x * x) * np.where(x > 0.5, x, 0.5)


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """widths: the float vector widths the compiler builds cleanly and computes right with;
    refused: {width: why} for the others; gflops: the GEMM's speed with the chosen tile (None
    where not timed: a simulator); problem: why the device cannot be used (None: it works);
    target: the CPU the compiler targets where the driver names it (PoCL's version string)."""
    widths: tuple = WIDTHS
    refused: dict = dataclasses.field(default_factory=dict)
    gflops: float = None
    problem: str = None
    target: str = ""
    native_width: int = 16
    seconds: float = 0.0

    @property
    def usable(self):
        return self.problem is None

    @property
    def vector_width(self):
        """The CPU register tiles' float vector width: the widest the compiler takes and the
        hardware has (native_vector_width_float; the preferred width misleads: Intel's CPU
        runtime says 1)."""
        fit = [w for w in self.widths if w <= max(4, self.native_width)]
        return max(fit) if fit else 4

    @property
    def advice(self):
        """What to install where the compiler drops the AVX-512 the CPU has ("" elsewhere): on
        an AMD Zen 4 PoCL 3.0's LLVM 14 compiles for znver3 (AVX2), and Debian's PoCL 3.1 (for
        skylake-avx512) trained the example CNN 1.5-1.7x as fast (docs/devices.md). Said only
        where the target names an AMD CPU without AVX-512 (znver1-3): a refusal of 16-wide
        vectors for another reason has no known fix to offer."""
        if not (self.usable and 16 in self.refused and self.native_width >= 16
                and self.target in ("znver1", "znver2", "znver3")):
            return ""
        return (f"this CPU has AVX-512, but this driver's compiler targets {self.target} "
                f"({self.vector_width}-wide kernels); a PoCL 3.1 or newer (Debian 12: `sudo "
                "apt-get install pocl-opencl-icd`) compiles for AVX-512 and trained the example "
                "CNN 1.5-1.7x as fast on an AMD Zen 4; once installed it is the default "
                "(docs/devices.md)")

    def describe(self):
        """A few words for --list-devices and the editor's device list."""
        if not self.usable:
            return f"cannot be used: {self.problem}"
        parts = [f"vector width {self.vector_width}"]
        if 16 in self.refused and self.native_width >= 16:
            why = self.refused[16]
            parts[0] += (f" (the compiler targets {self.target}, without AVX-512)"
                         if self.target else f" (16 refused: {why})")
        if self.gflops:
            parts.append(f"GEMM {self.gflops:.0f} GFLOP/s")
        return ", ".join(parts)

    def to_json(self):
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        d["refused"] = {str(k): v for k, v in self.refused.items()}
        return d

    @classmethod
    def from_json(cls, d):
        d = dict(d)
        d["widths"] = tuple(d.get("widths", ()))
        d["refused"] = {int(k): v for k, v in d.get("refused", {}).items()}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def software_kind(platform, device):
    """'simulator' (Oclgrind), 'software' (Mesa's llvmpipe and other software rasterisers)
    or '' for a real device: the first two are hundreds of times slower, never the default."""
    text = f"{platform.name} {device.name} {device.vendor}".lower()
    if "oclgrind" in text:
        return "simulator"
    return "software" if any(s in text for s in SOFTWARE) else ""


def is_simulator(platform, device):
    return bool(software_kind(platform, device))


def compiler_target(device):
    """The CPU PoCL compiles for, from its version string ("... HSTR:
    pthread-x86_64-unknown-linux-gnu-znver3" -> "znver3": the device type, the four parts of
    the target triple, then the CPU); "" for other drivers."""
    version = device.version or ""
    if "HSTR:" not in version:
        return ""
    parts = version.split("HSTR:", 1)[1].strip().split("-")
    return "-".join(parts[5:])


def first_error(log):
    """The first diagnostic of a compiler log without its file and position: "AVX vector
    argument of type '__private float16' ... changes the ABI"."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
    line = re.sub(r"^.*?\berror:\s*", "", line)
    line = re.sub(r"^\S+:\d+:\d+(\s*<[^>]*>)?:\s*", "", line)
    return line[:200]


def identity(platform, device):
    """What the probe's answer depends on: the device, its driver, the kernel sources."""
    from layerloom import clkernels
    h = hashlib.sha256()
    for part in (platform.name, platform.version, device.name, device.version,
                 device.driver_version, device.vendor, str(PROBE_VERSION), _WIDTH_PROBE):
        h.update(part.encode("utf-8", "replace") + b"\0")
    for name in clkernels.names():
        h.update(name.encode() + b"\0" + clkernels.source(name).encode("utf-8") + b"\0")
    return h.hexdigest()[:32]


def cache_path():
    root = os.environ.get("LAYERLOOM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "layerloom")
    return os.path.join(root, "devices.json")


def _read_cache():
    try:
        with open(cache_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data.get("devices", {}) if data.get("format") == PROBE_VERSION else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_cache(key, caps, label):
    from layerloom.core.fileio import atomic_write_text
    devices = _read_cache()
    devices[key] = dict(caps.to_json(), device=label)
    try:
        atomic_write_text(cache_path(), json.dumps({"format": PROBE_VERSION,
                                                    "devices": devices}, indent=1) + "\n")
    except OSError:  # a read-only cache: probe again next time
        pass


_memo = {}


def of(platform, device, runner=None):
    """The device's capabilities: from the cache, else probed (in a child process) and kept."""
    key = identity(platform, device)
    if key in _memo:
        return _memo[key]
    cached = _read_cache().get(key)
    if cached is not None:
        caps = Capabilities.from_json(cached)
    else:
        caps = probe(platform, device, runner or run_child)
        _write_cache(key, caps, f"{platform.name.strip()} {platform.version.strip()} | "
                                f"{device.name.strip()}")
    _memo[key] = caps
    return caps


def run_child(platform, device, skip):
    """Run the probe in a child process: (the JSON records it printed, its return code, its
    stderr)."""
    cmd = [sys.executable, "-m", "layerloom.backend.probe_child", identity(platform, device),
           ",".join(map(str, sorted(skip)))]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = "", "timeout"
    records = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records, rc, err


def _death(rc):
    if rc == "timeout":
        return f"did not finish in {TIMEOUT_S} s"
    if isinstance(rc, int) and rc < 0:
        try:
            return f"crashed ({signal.Signals(-rc).name})"
        except ValueError:
            return f"crashed (signal {-rc})"
    return f"exited with status {rc}"


def probe(platform, device, runner):
    """Probe in child processes (runner(platform, device, skip) -> (records, returncode)),
    again without any width whose build took the child down."""
    t0 = time.perf_counter()
    skip, refused = set(), {}
    for _ in range(len(WIDTHS) + 1):
        records, rc, *err = runner(platform, device, skip)
        started, result = None, {}
        for r in records:
            if r.get("stage") == "start":
                started = r["what"]
            elif r.get("stage") == "width":
                started = None
                if not r["ok"]:
                    refused[r["width"]] = r["why"]
            elif r.get("stage") == "done":
                started = None
                result = r
        if result:
            break
        if isinstance(started, str) and started.startswith("width "):
            w = int(started.split()[1])
            refused[w] = f"the compiler {_death(rc)} building float{w} code"
            skip.add(w)
            continue
        if started is None:  # the child failed before probing: say what it printed
            last = [ln for ln in (err[0] if err else "").splitlines() if ln.strip()][-1:]
            result = {"problem": f"the probe {_death(rc)} before it started"
                      + (f": {last[0][:200]}" if last else "")}
        else:
            result = {"problem": f"the OpenCL driver {_death(rc)} while {started}"}
        break
    widths = tuple(w for w in WIDTHS if w not in refused)
    return Capabilities(widths=widths, refused=refused, gflops=result.get("gflops"),
                        problem=result.get("problem"), target=compiler_target(device),
                        native_width=device.native_vector_width_float or 4,
                        seconds=round(time.perf_counter() - t0, 2))


def refusal(refused, target=""):
    """Why a CPU device whose compiler refused every width ({width: first error}) cannot be
    used: PoCL 3.0 on a CPU its LLVM does not know at all (AMD Zen 5) refuses even 'generic',
    the name LLVM gave it."""
    first = next(iter(refused.items()), (None, ""))
    if "unknown target CPU" in first[1]:
        return (f"its compiler does not know this CPU (it targets {target or 'generic'!r} and "
                f"refuses it: {first[1]})")
    return f"its compiler refuses every float vector width ({first[0]}: {first[1]})"
