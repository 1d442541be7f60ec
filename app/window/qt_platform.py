"""Before the editor makes its QApplication: on X11 Qt loads its xcb platform plugin, whose
system libraries a minimal Debian lacks (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1...).
Qt then aborts with 'Could not load the Qt platform plugin "xcb"' and a page of advice;
instead the editor says which libraries are missing and the one command that installs them.
The check reads the plugin's dependencies with ldd (part of every glibc system), so it knows
every missing library, not just the first."""
import os
import re
import shutil
import subprocess


def _xcb_plugin():
    try:
        import PySide6
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(PySide6.__file__), "Qt", "plugins", "platforms",
                        "libqxcb.so")
    return path if os.path.isfile(path) else None


def uses_xcb(env=os.environ):
    """Whether Qt will pick its xcb plugin: asked for, or the default on an X11 session."""
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def missing_libraries(ldd_output):
    """The sonames ldd reports as 'not found', each once, in its order."""
    seen = []
    for m in re.finditer(r"^\s*(\S+)\s+=>\s+not found", ldd_output, re.M):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def debian_package(soname):
    """libxcb-icccm.so.4 -> libxcb-icccm4; libxkbcommon-x11.so.0 -> libxkbcommon-x11-0 (Debian's
    naming: a hyphen before the version when the name ends in a digit)."""
    m = re.match(r"(lib[\w+.-]+?)\.so\.(\d+)", soname)
    if not m:
        return soname
    name, version = m.group(1).lower(), m.group(2)
    return f"{name}{'-' if name[-1].isdigit() else ''}{version}"


def problem(env=os.environ):
    """None when the editor can start; else one line saying what to install."""
    plugin = _xcb_plugin()
    if not uses_xcb(env) or plugin is None or shutil.which("ldd") is None:
        return None
    try:
        out = subprocess.run(["ldd", plugin], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    missing = missing_libraries(out)
    if not missing:
        return None
    packages = " ".join(debian_package(s) for s in missing)
    return (f"the editor cannot start: Qt's X11 plugin needs {', '.join(missing)}, not "
            f"installed; on Debian/Ubuntu: sudo apt-get install {packages} "
            "(or run headless with --run, or QT_QPA_PLATFORM=offscreen for --screenshot)")
