"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then renamed over
the target, so a crash leaves either the old file or the new one, never half of one."""
import io
import os
import shutil
import tempfile


def atomic_write_bytes(path, data, backup=False):
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        if hasattr(os, "fchmod"):  # mkstemp's 0600, not what an ordinary write gives
            os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if backup and os.path.exists(path):
            _atomic_backup(path, folder)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)  # make the rename itself durable


def _proc_umask():
    """The process's umask as Linux states it (reading it changes nothing), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _import_umask():
    """Elsewhere the umask is set and restored once, when this module is imported
    (single-threaded then): doing it per write while other threads create files would give
    theirs the wrong modes."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _proc_umask()
if _UMASK is None:
    _UMASK = _import_umask()


def _mode_for(path, new=0o666):
    """The permission bits an ordinary write of `path` would leave: the file's (or folder's)
    own where it exists, else `new` (0666 for a file, 0777 for a folder) less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = _proc_umask()
        return new & ~(_UMASK if mask is None else mask)


def _atomic_backup(path, folder):
    """PATH.bak becomes the current PATH in one rename: a hard link to it (no copy: the new
    version then replaces PATH with a new file, leaving this one to the link), or where links
    are not possible a complete, fsynced copy. A kill or a full disk leaves the previous .bak
    or the new one, never a truncated one."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".bak.", suffix=".tmp",
                               dir=folder)
    os.close(fd)
    try:
        try:
            os.unlink(tmp)
            os.link(path, tmp)
        except OSError:  # no hard links here (some network and FAT file systems)
            shutil.copy2(path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path + ".bak")
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text, backup=False):
    atomic_write_bytes(path, text.encode("utf-8"), backup=backup)


def npz_bytes(arrays):
    import numpy as np
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def atomic_save_npz(path, arrays):
    atomic_write_bytes(path, npz_bytes(arrays))


def load_weights(path, place="weights"):
    """{name: array} of a weights file (.npz) as npz_bytes wrote it; a DataError if there is
    none or it cannot be read (never unpickles)."""
    import numpy as np
    from layerloom.core.errors import DataError
    if not os.path.exists(path):
        raise DataError(f"weights file not found: {path}", place)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # corrupt zip, pickled arrays...
        raise DataError(f"{path}: not a readable weights file ({e})", place) from None


def rescue(name, data):
    """Keep data (trained weights that could not be written where asked: a full disk)
    somewhere else: the temporary folder (often another file system), else the cache.
    Returns the path, or None if nowhere took it."""
    places = [tempfile.gettempdir(), os.path.join(os.path.expanduser("~"), ".cache",
                                                  "layerloom", "rescued")]
    for place in places:
        try:
            os.makedirs(place, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="layerloom-rescued-", suffix="-" + name,
                                        dir=place)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return path
        except OSError:
            try:
                os.unlink(path)
            except (OSError, UnboundLocalError):
                pass
    return None


def relative_path_problem(path):
    """Why `path` cannot name a file inside an output folder (absolute, a drive, '..', empty,
    a NUL), or None. Backslashes count as separators too: a project made on Windows."""
    if not isinstance(path, str) or not path.strip():
        return "expected a non-empty relative path"
    parts = path.replace("\\", "/").split("/")
    if ("\0" in path or os.path.isabs(path) or path.startswith(("/", "\\"))
            or (len(path) > 1 and path[1] == ":") or ".." in parts):
        return "expected a path inside the run's output folder"
    return None


def inside(folder, path):
    """folder/path, or None where it would lead out of folder: relative_path_problem's
    refusals, and a symlink on the way that points out of it (resolved now)."""
    if relative_path_problem(path):
        return None
    base = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(base, path))
    if os.path.commonpath([base, target]) != base:
        return None
    return os.path.join(folder, path)


# -- a run's outputs as one unit ------------------------------------------------------------

_RENAME_EXCHANGE = 2


def _exchange(a, b):
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or file system cannot."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD = -100
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    return False


def _link_tree(src, dst, skip):
    """dst/ gets everything of src/ but the names in skip: hard links to its files (no copy;
    a copy where links are not possible), its folders and symlinks recreated."""
    for entry in os.scandir(src):
        if entry.name in skip:
            continue
        target = os.path.join(dst, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            os.mkdir(target)
            _link_tree(entry.path, target, ())
        else:
            try:
                os.link(entry.path, target)
            except OSError:
                shutil.copy2(entry.path, target)


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


STAGING_MARK = ".layerloom-staging-"


def write_folder_unit(folder, files):
    """Write files ({name: bytes}) into folder so that they appear together or not at all:
    a complete copy of the folder (the rest of its contents hard-linked, the new files
    written and fsynced) is made beside it and swapped in with one rename. A kill at any
    point leaves the old folder or the new one, never a mix; an error (a full disk) leaves
    the old one and no temporaries, and is raised as OSError with the name being written."""
    folder = os.path.realpath(folder)
    parent, base = os.path.dirname(folder), os.path.basename(folder)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_staging(parent, base)
    staging = tempfile.mkdtemp(prefix=f".{base}{STAGING_MARK}{os.getpid()}-", dir=parent)
    try:
        os.chmod(staging, _mode_for(folder, 0o777))  # mkdtemp's 0700: not a folder's mode
        if os.path.isdir(folder):
            _link_tree(folder, staging, set(files))
        for name, data in files.items():
            try:
                with open(os.path.join(staging, name), "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                e.filename = os.path.join(folder, name)
                raise
        _fsync_dir(staging)
        if not os.path.isdir(folder):
            os.rename(staging, folder)
        elif _exchange(staging, folder):
            shutil.rmtree(staging, ignore_errors=True)  # the old contents, now at staging
        else:  # no atomic swap here: the old folder stays whole under a temporary name
            old = staging + ".old"
            os.rename(folder, old)
            os.rename(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _remove_stale_staging(parent, base=None):
    """Staging folders of runs that were killed (their process is gone): of the folder `base`
    in parent, or of any folder there when base is None."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if base is not None and not name.startswith(f".{base}{STAGING_MARK}"):
            continue
        if not name.startswith(".") or STAGING_MARK not in name:
            continue
        pid = name.split(STAGING_MARK, 1)[1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def remove_stale_staging(parent):
    """What killed writes of any folder unit in `parent` left behind."""
    _remove_stale_staging(parent)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
