"""Atomic writing of files and folders: nothing already written is lost when a write
fails or the process is killed, and no reader ever sees half of one."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from shapekit.errors import ShapekitError


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(path, suffix):
    """Remove the temporary files of writes to ``path`` whose process no longer runs (a
    write killed before its rename)."""
    pattern = re.compile(r"^\." + re.escape(path.stem) + r"\.(\d+)\.[^.]+\.tmp" + re.escape(suffix) + "$")
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return
    for name in entries:
        m = pattern.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the destination's suffix (or ``suffix``) so that
    writers which pick a format from the extension (``np.savez``, ``savefig``)
    behave as they would on the final name. On an exception the temporary file is
    removed and ``path`` is left untouched; temporary files that killed writes to
    ``path`` left behind are removed by the next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    _remove_stale_temporaries(path, suffix)
    try:
        # the process id in the name lets a later write find what a killed one left
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=".tmp" + suffix, dir=path.parent)
    except OSError as exc:
        # name the destination, not the temporary file the caller never asked for
        raise type(exc)(exc.errno, f"cannot write here ({exc.strerror})", str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        fault_point("file written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file for writing and rename it onto ``path`` when closed cleanly."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


# ----------------------------------------------------------------------------------
# folders: built complete under a temporary name, then swapped in
# ----------------------------------------------------------------------------------
#: Test hook: called with a label at every step where a kill could leave a state behind
#: (after each file written atomically, and between the steps of a folder swap).
FAULT_HOOK = None


def fault_point(label):
    """Call :data:`FAULT_HOOK` (tests inject kills here); nothing otherwise."""
    if FAULT_HOOK is not None:
        FAULT_HOOK(label)


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange(a, b):
    """Swap the names ``a`` and ``b`` (two existing paths on one file system) in one atomic
    step; return False where the system cannot (not Linux, or a file system without
    ``renameat2(RENAME_EXCHANGE)``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# leftovers beside DEST: .DEST.<pid>.<token>.new (being built, or complete with a
# COMPLETE file inside) and .DEST.<pid>.<token>.old (the previous DEST after a swap)
_COMPLETE = ".shapekit-complete"


def _leftovers(dest):
    pattern = re.compile(r"^\." + re.escape(dest.name) + r"\.(\d+)\.([0-9a-z]+)\.(new|old)$")
    legacy = re.compile(r"^\." + re.escape(dest.name) + r"\.old-(\d+)$")  # prepare's earlier two-rename swap
    found = []
    try:
        entries = list(os.scandir(dest.parent))
    except FileNotFoundError:
        return found
    for e in entries:
        m = pattern.match(e.name)
        if m:
            found.append((Path(e.path), int(m.group(1)), m.group(3)))
            continue
        m = legacy.match(e.name)
        if m:
            found.append((Path(e.path), int(m.group(1)), "old"))
    return found


def repair_folder(dest):
    """Finish or undo what an interrupted :func:`atomic_folder` left beside ``dest`` and
    remove the temporary folders of processes that no longer run; return what was done.

    With an atomic exchange ``dest`` is always complete and only leftovers remain. On
    systems without one, a swap is two renames: when it was cut between them ``dest``
    is missing, and it gets back the new folder (if it was complete) or the old one.
    """
    dest = Path(dest)
    done = []
    dead = [(p, pid, kind) for p, pid, kind in _leftovers(dest) if pid != os.getpid() and not _pid_alive(pid)]
    if not os.path.lexists(dest):
        complete = [p for p, _, kind in dead if kind == "new" and (p / _COMPLETE).exists()]
        olds = [p for p, _, kind in dead if kind == "old"]
        back = complete[0] if complete else (olds[0] if olds else None)
        if back is not None:
            os.rename(back, dest)
            with contextlib.suppress(FileNotFoundError):
                (dest / _COMPLETE).unlink()
            done.append(f"restored {dest} from {back.name}")
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        (dest / _COMPLETE).unlink()  # a fallback swap cut just before its last step
        done.append(f"removed {_COMPLETE} from {dest}")
    for p, _, _ in dead:
        if os.path.lexists(p):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    return done


def _carry(old, new, keep):
    """Hard-link (or copy) into ``new`` every entry of ``old`` that ``new`` lacks and
    ``keep(relpath)`` accepts: what an in-place write would have left untouched."""
    for dirpath, dirnames, filenames in os.walk(old):
        rel = os.path.relpath(dirpath, old)
        for name in filenames:
            relpath = name if rel == "." else os.path.join(rel, name)
            target = new / relpath
            if os.path.lexists(target) or not keep(relpath.replace(os.sep, "/")):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = os.path.join(dirpath, name)
            try:
                os.link(src, target, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, target, follow_symlinks=False)


@contextlib.contextmanager
def atomic_folder(dest, carry_old=None):
    """Yield an empty temporary folder beside ``dest``; when the block ends cleanly, make
    it ``dest`` in one atomic step, so that a kill at any instant leaves either the old
    ``dest`` or the new one, never a mixture or nothing.

    ``carry_old`` (a function of a '/'-separated relative path, or True for all): files
    of the old ``dest`` that the block did not write and ``carry_old`` accepts are
    carried into the new folder (hard links), as an in-place write would have kept
    them. The swap is ``renameat2(RENAME_EXCHANGE)``; where the system lacks it, two
    renames whose interruption :func:`repair_folder` (run first by every call) undoes.
    Folders get the permissions of a plain ``mkdir`` (the umask applies). On an
    exception the temporary folder is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))  # the folder it points to is the output
    here = Path.cwd().resolve()
    full = dest.resolve()
    if full == here or full in here.parents or full == Path.home().resolve() or full.parent == full:
        raise ShapekitError(f"{dest}: an output folder is replaced whole when complete; give a folder of its own "
                            "(not the current folder, one above it, the home folder or a root)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    repair_folder(dest)
    if os.path.lexists(dest) and not dest.is_dir():
        raise FileExistsError(17, "a file is in the way of the output folder", os.fspath(dest))
    stem = f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}"
    new, old = dest.parent / f"{stem}.new", dest.parent / f"{stem}.old"
    os.mkdir(new)  # mode 0o777 & ~umask, unlike mkdtemp's 0700
    try:
        yield new
        if carry_old and dest.is_dir():
            _carry(dest, new, (lambda rel: True) if carry_old is True else carry_old)
        fault_point("folder built")
        if not os.path.lexists(dest):
            os.rename(new, dest)
            fault_point("folder renamed")
            return
        if exchange(new, dest):
            # the old folder now has the temporary name: a leftover whichever instant a kill comes
            fault_point("folders exchanged")
            old = new
        else:
            (new / _COMPLETE).touch()  # tells repair_folder the new folder may be renamed in
            fault_point("new folder complete")
            os.rename(dest, old)
            fault_point("old folder moved aside")
            os.rename(new, dest)
            fault_point("new folder renamed")
            (dest / _COMPLETE).unlink()
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
