"""A run's outputs are one unit and a save keeps its backup whole, through kills, full disks
and signals: child processes killed at random points (a bounded number of trials), a file
size limit standing in for a full disk, SIGTERM and Ctrl-C at start-up and during training."""
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")
OUTPUTS = ("history.json", "trained.loom", "training_state.npz", "weights.npz")


def project(tmp_path, name, epochs, units=64):
    with open(os.path.join(EXAMPLES, "spirals.loom"), encoding="utf-8") as f:
        d = json.load(f)
    d["training"]["epochs"] = epochs
    d["graph"]["nodes"][1]["params"]["units"] = units
    d["graph"]["nodes"][2]["params"]["units"] = units
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return str(path)


def cmd(path, out, *extra):
    return [sys.executable, "-m", "layerloom.app", "--run", path, "--out", str(out), *extra]


def run(path, out, *extra, **kw):
    return subprocess.run(cmd(path, out, *extra), capture_output=True, text=True, timeout=600,
                          **kw)


def state(out):
    """(epochs in history.json, epochs in trained.loom, the weights) of an output folder."""
    with open(out / "history.json") as f:
        h = json.load(f)
    with open(out / "trained.loom") as f:
        t = json.load(f)
    with np.load(out / "weights.npz", allow_pickle=False) as z:
        w = {k: z[k] for k in z.files}
    return len(h["epochs"]), t["training"]["epochs"], w


def same_weights(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def staging_left(out):
    return [n for n in os.listdir(out.parent) if ".layerloom-staging-" in n]


@pytest.mark.slow
def test_killed_runs_leave_the_old_outputs_or_the_new_never_a_mix(tmp_path):
    """A run of 2 epochs wrote the folder; runs of 3 epochs into it are killed (SIGKILL) at
    random points near their end, while they write. Each time the folder holds the 2-epoch
    set or the 3-epoch set, whole; the staging folder a kill leaves is removed by the next
    run to that folder."""
    a, b = project(tmp_path, "a.loom", 2), project(tmp_path, "b.loom", 3)
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert run(a, out).returncode == 0
    old = state(out)
    t = time.perf_counter()
    assert run(b, ref).returncode == 0
    duration = time.perf_counter() - t
    new = state(ref)
    rng = random.Random(7)
    seen = {"old": 0, "new": 0}
    for trial in range(12):
        p = subprocess.Popen(cmd(b, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * rng.uniform(0.75, 1.1))
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = state(out)
        if got[:2] == old[:2] and same_weights(got[2], old[2]):
            seen["old"] += 1
        else:
            assert got[:2] == new[:2] and same_weights(got[2], new[2]), f"trial {trial}: mixed"
            seen["new"] += 1
            assert run(a, out).returncode == 0  # back to the old set for the next trial
        assert sorted(set(os.listdir(out)) - {"records"}) == sorted(OUTPUTS)
        assert all(os.path.isfile(os.path.join(out, "records", r, "run.json"))
                   for r in os.listdir(out / "records") if not r.startswith("."))
    assert run(a, out).returncode == 0
    assert staging_left(out) == [] and staging_left(out / "records" / "x") == []
    assert sum(seen.values()) == 12


def test_sigterm_stops_after_the_batch_and_writes_the_outputs(tmp_path):
    path = project(tmp_path, "p.loom", 500)
    out = tmp_path / "out"
    p = subprocess.Popen(cmd(path, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for line in p.stdout:  # wait for training to be under way
        if line.startswith("Epoch "):
            break
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 143, stderr
    assert "Stopped by SIGTERM" in stdout and "Traceback" not in stderr
    assert sorted(set(os.listdir(out)) - {"records"}) == sorted(OUTPUTS)
    with open(out / "history.json") as f:
        assert json.load(f)["stopped"] is True


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM,)], ids=["ctrl-c", "ctrl-c-twice",
                                                              "sigterm"])
def test_a_signal_during_start_up_is_one_line_and_nothing_written(tmp_path, signals):
    path = project(tmp_path, "p.loom", 5)
    out = tmp_path / "out"
    p = subprocess.Popen(cmd(path, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    _wait_for_handlers(p.pid)  # then it imports numpy and pyopencl for a second or so
    time.sleep(0.05)
    for s in signals:
        p.send_signal(s)
        time.sleep(0.01)
    _, stderr = p.communicate(timeout=120)
    want = 143 if signals[0] == signal.SIGTERM else 130
    assert p.returncode == want, stderr
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 1
    assert not out.exists()


def _wait_for_handlers(pid, timeout=30):
    """Until launch.py has set its SIGTERM handler (the kernel's SigCgt mask shows it): a signal
    before that meets Python's defaults, which is not the case under test. A loaded machine can
    take longer than any fixed sleep to get there."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt"))
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)
    raise AssertionError("the command set no signal handlers")


def _limit_file_size(nbytes):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


@pytest.mark.slow
def test_a_full_disk_changes_nothing_and_names_the_file(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the 16 MB weights cannot be written (the limit,
    8 MB, leaves the driver's compiler its files). Exit 1 with the file named, the previous
    outputs untouched, no temporaries."""
    big = project(tmp_path, "big.loom", 1, units=2048)
    small = project(tmp_path, "small.loom", 1)
    out = tmp_path / "out"
    assert run(small, out).returncode == 0
    before = {n: (out / n).read_bytes() for n in OUTPUTS}
    assert run(big, tmp_path / "warm").returncode == 0  # kernels compiled and cached
    r = run(big, out, preexec_fn=_limit_file_size(8 << 20))
    assert r.returncode == 1, r.stderr
    assert f"could not write the run's outputs to {out}" in r.stderr
    assert "weights.npz" in r.stderr and "Traceback" not in r.stderr
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before
    assert staging_left(out) == []


def test_outputs_that_cannot_be_written_keep_the_weights_elsewhere(tmp_path, monkeypatch):
    """Where the folder cannot take them (ENOSPC), the trained weights go to the temporary
    folder, and the error says where."""
    import errno

    from layerloom.cli import run as cli
    from layerloom.core.errors import TrainingError

    def full(folder, files):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(folder,
                                                                            "weights.npz"))
    monkeypatch.setattr(cli, "write_folder_unit", full)
    weights = b"the trained weights"
    with pytest.raises(TrainingError) as e:
        cli.write_outputs(str(tmp_path / "out"), {"weights.npz": weights})
    text = str(e.value)
    assert "No space left on device writing" in text and "weights.npz" in text
    kept = text.rsplit("the trained weights are kept in ", 1)[1]
    try:
        assert open(kept, "rb").read() == weights
    finally:
        os.unlink(kept)


SAVER = """
from layerloom.project import loom as projectfile
p = projectfile.load({path!r}, strict=False)
i = 0
while True:
    i += 1
    p.ui = {{"note": "x" * (1000 + i % 50000)}}
    projectfile.save(p)
"""


@pytest.mark.slow
def test_kills_and_a_full_disk_during_save_never_truncate_the_backup(tmp_path):
    """A child saves a project over and over and is killed at random points (20 trials);
    then a save that the file size limit stops. The project and its .bak always parse, and no
    temporary is left but by the kills themselves (never a truncated .bak)."""
    from layerloom.project import loom as projectfile
    path = project(tmp_path, "p.loom", 1)
    projectfile.save(projectfile.load(path, strict=False))
    rng = random.Random(3)
    for _ in range(20):
        p = subprocess.Popen([sys.executable, "-c", SAVER.format(root=ROOT, path=path)])
        time.sleep(rng.uniform(0.3, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        for f in (path, path + ".bak"):
            projectfile.load(f, strict=False)  # complete, parseable
    before = {f: open(f, "rb").read() for f in (path, path + ".bak")}
    code = ("import sys\nfrom layerloom.project import loom as pf\n"
            "p = pf.load(%r, strict=False); p.ui = {'note': 'y' * 3000000}\n"
            "try:\n    pf.save(p)\nexcept OSError:\n    sys.exit(3)\n") % path
    r = subprocess.run([sys.executable, "-c", code], preexec_fn=_limit_file_size(1 << 20))
    assert r.returncode == 3
    assert {f: open(f, "rb").read() for f in (path, path + ".bak")} == before


def test_a_start_up_signal_exits_at_once_without_raising(monkeypatch):
    """The start-up handler does not raise into whatever is running (an import can swallow the
    exception, seen: a SIGTERM and then a whole training, exit 0; or wrap it in an ImportError
    with a traceback): it writes one line and exits with the signal's code."""
    from layerloom.cli import launch, signals
    assert launch._stop is signals._stop  # the one the command sets
    written, exits = [], []
    monkeypatch.setattr(signals.os, "write", lambda fd, data: written.append((fd, data)))
    monkeypatch.setattr(signals.os, "_exit", exits.append)
    signals._stop(signal.SIGINT, None)
    signals._stop(signal.SIGTERM, None)
    assert exits == [130, 143]
    assert written == [(2, b"layerloom: interrupted; nothing written\n"),
                       (2, b"layerloom: terminated (SIGTERM); nothing written\n")]

