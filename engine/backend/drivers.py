"""OpenCL drivers the loader would not find on its own, and what to say when none works.

pyopencl's bundled PoCL 3.0 (LLVM 14) is the default driver. On a CPU its LLVM does not know
at all (AMD Zen 5, family 26: LLVM 14 names it 'generic', which its compiler then refuses
for every program) it cannot build anything; two drivers that work there install from the
package registries (HINT). Intel's CPU runtime, installed with pip into the environment, ships
an .icd file naming a placeholder path (/opt/anaconda1anaconda2anaconda3/lib/...), so the
OpenCL loader never loads it: register_pip_drivers writes a vendor folder that names the
real library beside copies of the system's .icd files, and points OCL_ICD_VENDORS at it,
before pyopencl first asks the loader for platforms. A user who set OCL_ICD_VENDORS keeps it.
"""
import glob
import os
import sys

HINT = ("install an OpenCL driver that knows this CPU: `apt-get install pocl-opencl-icd` "
        "(PoCL 3.1 or newer) or `pip install 'layerloom[intel]'` (Intel's CPU runtime, which "
        "also runs on AMD CPUs)")
SYSTEM_VENDORS = "/etc/OpenCL/vendors"
PIP_LIBRARIES = {"intel-cpu.icd": "libintelocl.so"}  # .icd name: library under <prefix>/lib


def _cache_root():
    return os.environ.get("LAYERLOOM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "layerloom")


def register_pip_drivers(env=None, prefix=None, system_vendors=SYSTEM_VENDORS, cache=None):
    """Make drivers installed with pip into `prefix` (default: this environment) visible to
    the OpenCL loader by setting env["OCL_ICD_VENDORS"] (default: os.environ) to a folder
    holding their .icd files and the system's. Returns the folder, or None when nothing was
    changed (OCL_ICD_VENDORS already set, no such driver, or the folder cannot be written)."""
    from layerloom.core.fileio import atomic_write_text
    env = os.environ if env is None else env
    prefix = prefix or sys.prefix
    if env.get("OCL_ICD_VENDORS"):
        return None
    found = {icd: os.path.join(prefix, "lib", lib) for icd, lib in PIP_LIBRARIES.items()
             if os.path.isfile(os.path.join(prefix, "lib", lib))}
    if not found:
        return None
    entries = {}
    for path in sorted(glob.glob(os.path.join(system_vendors, "*.icd"))):
        try:
            with open(path, encoding="utf-8") as f:
                entries[os.path.basename(path)] = f.read().strip()
        except OSError:
            continue
    entries.update(found)
    folder = os.path.join(cache or _cache_root(), "opencl-vendors")
    try:
        os.makedirs(folder, exist_ok=True)
        for name in set(os.listdir(folder)) - set(entries):
            os.remove(os.path.join(folder, name))
        for name, library in entries.items():
            atomic_write_text(os.path.join(folder, name), library + "\n")
    except OSError:
        return None
    env["OCL_ICD_VENDORS"] = folder
    return folder
