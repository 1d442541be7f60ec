"""OpenCL drivers beyond pyopencl's bundled PoCL 3.0. On a CPU that PoCL 3.0's LLVM 14 does
not know at all (AMD Zen 5: LLVM names it 'generic', which its compiler then refuses for
every program), the device is refused with a message that says so and names the two
drivers that work there. Intel's CPU runtime installed with pip into the environment
(`pip install 'layerloom[intel]'`) ships an .icd naming a placeholder path, so it is
registered for the OpenCL loader without the user writing one."""
import os

from layerloom.backend import capabilities, drivers
from layerloom.backend.runtime import Choice


def _fake_env(tmp_path, intel=True, system=("pocl.icd",)):
    prefix = tmp_path / "venv"
    (prefix / "lib").mkdir(parents=True)
    if intel:
        (prefix / "lib" / "libintelocl.so").write_bytes(b"")
    vendors = tmp_path / "etc-vendors"
    vendors.mkdir()
    for name in system:
        (vendors / name).write_text(f"/usr/lib/{name}.so\n")
    return str(prefix), str(vendors), str(tmp_path / "cache")


def test_a_pip_installed_intel_runtime_is_registered_beside_the_system_drivers(tmp_path):
    prefix, vendors, cache = _fake_env(tmp_path)
    env = {}
    folder = drivers.register_pip_drivers(env, prefix=prefix, system_vendors=vendors,
                                          cache=cache)
    assert env["OCL_ICD_VENDORS"] == folder
    files = {n: open(os.path.join(folder, n)).read().strip() for n in os.listdir(folder)}
    assert files["intel-cpu.icd"] == os.path.join(prefix, "lib", "libintelocl.so")
    assert files["pocl.icd"] == "/usr/lib/pocl.icd.so"  # the system's drivers stay visible
    # idempotent: a second call (another process) writes the same folder
    assert drivers.register_pip_drivers({}, prefix=prefix, system_vendors=vendors,
                                        cache=cache) == folder


def test_a_users_own_vendor_folder_or_no_runtime_changes_nothing(tmp_path):
    prefix, vendors, cache = _fake_env(tmp_path)
    env = {"OCL_ICD_VENDORS": "/mine"}
    assert drivers.register_pip_drivers(env, prefix=prefix, system_vendors=vendors,
                                        cache=cache) is None
    assert env == {"OCL_ICD_VENDORS": "/mine"}
    prefix2, vendors2, cache2 = _fake_env(tmp_path / "b", intel=False)
    env = {}
    assert drivers.register_pip_drivers(env, prefix=prefix2, system_vendors=vendors2,
                                        cache=cache2) is None
    assert env == {}


def test_an_unwritable_cache_leaves_the_loader_as_it_was(tmp_path):
    prefix, vendors, _ = _fake_env(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {}
    assert drivers.register_pip_drivers(env, prefix=prefix, system_vendors=vendors,
                                        cache=str(blocker / "sub")) is None
    assert env == {}


def test_a_compiler_that_does_not_know_the_cpu_is_named_with_the_drivers_that_do():
    """What PoCL 3.0 said on an AMD EPYC of family 26 (Zen 5) for each width."""
    refused = {w: "unknown target CPU 'generic'" for w in capabilities.WIDTHS}
    text = capabilities.refusal(refused, target="generic")
    assert "does not know this CPU" in text and "'generic'" in text
    assert "apt-get install pocl-opencl-icd" in drivers.HINT
    assert "pip install 'layerloom[intel]'" in drivers.HINT
    # an ordinary refusal keeps the compiler's words
    assert capabilities.refusal({4: "x", 8: "y", 16: "z"}, target="skylake") == \
        "its compiler refuses every float vector width (4: x)"


def test_no_working_device_names_the_drivers(monkeypatch):
    from layerloom.backend import runtime
    from layerloom.core.errors import DeviceError
    import pytest

    class Dev:
        name = "pthread-AMD EPYC"
    c = Choice(0, 0, None, Dev())
    c.why = "cannot be used: its compiler does not know this CPU"
    monkeypatch.setattr(runtime, "list_devices", lambda: [(0, 0, None, Dev())])
    monkeypatch.setattr(runtime, "survey", lambda probe=None: [c])
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)  # the default choice, whatever the shell says
    with pytest.raises(DeviceError) as e:
        runtime.choose_device(None)
    assert drivers.HINT in str(e.value)
