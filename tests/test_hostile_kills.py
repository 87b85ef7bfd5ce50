"""Killing a command that writes a folder leaves the old folder or the new one (issue 15).

For each folder output (``soften``, ``convert`` to a folder, ``prepare``, ``synth``) an
old output is made, then the command is run again with other settings and killed:

- at every fault point (``shapekit._files.FAULT_HOOK``: after each file written and
  between the steps of the folder swap), in a forked child that ends with
  ``os._exit`` there, as a kill would: no cleanup runs;
- by ``SIGKILL`` at random times during the run (a few trials by default, 50 per
  command with ``--slow``, the issue's acceptance).

After each kill the output folder must hold exactly the old files or exactly the new
ones; a complete run afterwards must give the new output and leave no temporary
folder beside it. Folder modes must follow the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from shapekit import _files

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def snapshot(folder):
    """Return {relative path: sha256} of every file under ``folder`` (None when it is missing)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "manifest.json":  # synth's manifest records how long the run took
                manifest = json.loads(data)
                manifest.pop("seconds", None)
                data = json.dumps(manifest, sort_keys=True).encode()
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def leftovers(dest):
    dest = Path(dest)
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


def _shapes(n, seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, (68, 2))
    return base[None] + rng.normal(0, 3, (n, 68, 2))


def scenario(kind, root):
    """Return ``(dest, run)``: ``run(version)`` writes output ``version`` (0 old, 1 new) to ``dest``."""
    root = Path(root)
    if kind == "soften":
        from shapekit.io import write
        from shapekit.shape import PointDistributionModel
        from shapekit.shape.jobs import soften_files

        src = root / "hard"
        write(src, _shapes(6, 0), format="pts", meta=[{"name": f"f{i}"} for i in range(6)])
        model = root / "model.npz"
        PointDistributionModel(n_components=0.95).fit(_shapes(40, 1)).save(model)
        dest = root / "soft"

        def run(version):
            soften_files(src, model, dest, variance=(0.9, 0.5)[version])
    elif kind == "convert":
        from shapekit.io import write

        dest = root / "converted"

        def run(version):
            write(dest, _shapes(6, 10 + version), format="ljson", meta=[{"name": f"f{i}"} for i in range(6)])
    elif kind == "prepare":
        from shapekit.data.prepare import prepare
        from shapekit.data.synth import write_dataset

        faces = root / "faces"
        write_dataset(faces, 4, seed=0, size=64)
        dest = root / "prepared"

        def run(version):
            prepare(faces, dest, size=(16, 24)[version], progress=False)
    elif kind == "synth":
        from shapekit.data.synth import write_dataset

        dest = root / "synth"

        def run(version):
            write_dataset(dest, 3, seed=version, size=48)
    else:
        raise ValueError(kind)
    return dest, run


KINDS = ("soften", "convert", "prepare", "synth")


def _own_progress_locks():
    """Give every tqdm class of this process a lock of its own.

    tqdm's write lock holds a multiprocessing semaphore that a fork shares with the parent,
    and each class that made a bar before the fork (``tqdm.auto``'s as well as the base
    class) has its own. A child killed while holding one would leave the parent's next
    progress bar, even a disabled one, waiting forever.
    """
    classes = [tqdm]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls is tqdm or "_lock" in vars(cls):
            cls.set_lock(threading.RLock())


def _fork(fn):
    pid = os.fork()
    if pid == 0:  # the child: run, and leave without any cleanup
        _own_progress_locks()
        try:
            fn()
        finally:
            os._exit(0)
    return pid


def test_a_child_killed_holding_the_progress_lock_leaves_the_parents_bars_working():
    """The kill tests fork children that make progress bars (shapekit's come from
    ``tqdm.auto``). Run in a subprocess: a regression hangs there, not the suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tqdm.auto import tqdm as auto_tqdm
        from test_hostile_kills import _fork

        auto_tqdm(range(2), disable=True).close()  # the parent's tqdm.auto class gets its own lock

        def hold():
            with auto_tqdm.get_lock():
                time.sleep(60)

        pid = _fork(hold)
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        auto_tqdm(range(2), disable=True).close()
        print("bars work")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "bars work" in res.stdout, res.stderr


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Per kind: dest, run, the old and new snapshots, and a saved copy of the old output."""
    out = {}
    for kind in KINDS:
        root = tmp_path_factory.mktemp(kind)
        dest, run = scenario(kind, root)
        run(1)
        new = snapshot(dest)
        shutil.rmtree(dest)
        run(0)
        old = snapshot(dest)
        assert old != new and old and new
        keep = root / "old-copy"
        shutil.copytree(dest, keep)
        out[kind] = (dest, run, old, new, keep)
    return out


def _reset(dest, keep):
    shutil.rmtree(dest, ignore_errors=True)
    for name in leftovers(dest):
        shutil.rmtree(dest.parent / name, ignore_errors=True)
    shutil.copytree(keep, dest)


def _check_after_kill(kind, dest, run, old, new, where):
    got = snapshot(dest)
    assert got in (old, new), f"{kind}: after a kill {where} the output is neither the old nor the new one"
    run(1)  # the next run repairs and cleans up
    assert snapshot(dest) == new, f"{kind}: the run after a kill {where} did not write the new output"
    assert leftovers(dest) == [], f"{kind}: leftovers after the repairing run: {leftovers(dest)}"
    return "old" if got == old else "new"


def _count_fault_points(run):
    calls = []
    _files.FAULT_HOOK = calls.append
    try:
        run(1)
    finally:
        _files.FAULT_HOOK = None
    return calls


@pytest.mark.parametrize("kind", KINDS)
def test_kill_at_every_fault_point_leaves_old_or_new(kind, states):
    dest, run, old, new, keep = states[kind]
    _reset(dest, keep)
    labels = _count_fault_points(run)
    assert "folders exchanged" in labels or "folder renamed" in labels or "new folder renamed" in labels
    seen = []
    for k in range(len(labels)):
        _reset(dest, keep)

        def killed_at(k=k):
            count = [0]

            def hook(label):
                if count[0] == k:
                    os._exit(0)
                count[0] += 1

            _files.FAULT_HOOK = hook
            run(1)

        pid = _fork(killed_at)
        os.waitpid(pid, 0)
        seen.append(_check_after_kill(kind, dest, run, old, new, f"at '{labels[k]}' (point {k})"))
    assert "old" in seen and "new" in seen  # both sides of the swap were reached


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_random_times_leaves_old_or_new(kind, states, request):
    dest, run, old, new, keep = states[kind]
    trials = 50 if request.config.getoption("--slow") else 4
    _reset(dest, keep)
    t0 = time.perf_counter()
    run(1)
    full = time.perf_counter() - t0
    rng = np.random.default_rng(15)
    outcome = {"old": 0, "new": 0}
    for trial in range(trials):
        _reset(dest, keep)
        pid = _fork(lambda: run(1))
        time.sleep(rng.uniform(0, 1.2 * full))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        outcome[_check_after_kill(kind, dest, run, old, new, f"in trial {trial}")] += 1
    print(f"{kind}: {trials} SIGKILLs at random times (run {full:.3f} s): old output {outcome['old']}, "
          f"new output {outcome['new']}, anything else 0")


def test_repair_restores_a_folder_cut_between_two_renames(tmp_path):
    """Where no atomic exchange exists the swap is two renames; a kill between them
    leaves no output folder, and the next call puts the complete new one in place."""
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    dead = 2 ** 22 + 17  # above the default pid_max: no such process
    while _files._pid_alive(dead):
        dead += 1
    new = tmp_path / f".out.{dead}.ab12.new"
    new.mkdir()
    (new / "a.txt").write_text("new")
    (new / _files._COMPLETE).touch()
    os.rename(dest, tmp_path / f".out.{dead}.ab12.old")
    assert not dest.exists()
    done = _files.repair_folder(dest)
    assert (dest / "a.txt").read_text() == "new" and not (dest / _files._COMPLETE).exists()
    assert leftovers(dest) == [] and len(done) == 2
    # an incomplete new folder is dropped and the old one comes back
    os.rename(dest, tmp_path / f".out.{dead}.cd34.old")
    (tmp_path / f".out.{dead}.ef56.new").mkdir()
    _files.repair_folder(dest)
    assert (dest / "a.txt").read_text() == "new" and leftovers(dest) == []
    # the two-rename swap of earlier versions of prepare
    os.rename(dest, tmp_path / f".out.old-{dead}")
    _files.repair_folder(dest)
    assert (dest / "a.txt").read_text() == "new" and leftovers(dest) == []


def test_fallback_swap_without_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "exchange", lambda a, b: False)
    dest = tmp_path / "out"
    for text in ("old", "new"):
        with _files.atomic_folder(dest) as stage:
            (stage / "a.txt").write_text(text)
    assert (dest / "a.txt").read_text() == "new" and snapshot(dest) == snapshot(dest)
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"] and leftovers(dest) == []


def test_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with _files.atomic_folder(tmp_path / "a") as stage:
            (stage / "sub").mkdir()
        os.umask(0o027)
        with _files.atomic_folder(tmp_path / "b") as stage:
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "a" / "sub").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o750


def test_an_error_leaves_the_old_folder_and_no_leftover(tmp_path):
    dest = tmp_path / "out"
    with _files.atomic_folder(dest) as stage:
        (stage / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with _files.atomic_folder(dest, carry_old=True) as stage:
            (stage / "b.txt").write_text("half")
            raise RuntimeError("boom")
    assert snapshot(dest) == {"a.txt": hashlib.sha256(b"old").hexdigest()} and leftovers(dest) == []
    with _files.atomic_folder(dest, carry_old=True) as stage:
        (stage / "b.txt").write_text("new")
    assert sorted(snapshot(dest)) == ["a.txt", "b.txt"]  # carried over, as an in-place write keeps it


def test_a_killed_file_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    path = tmp_path / "model.npz"

    def killed():
        _files.FAULT_HOOK = lambda label: os._exit(0)  # killed between writing and renaming
        with _files.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")

    os.waitpid(_fork(killed), 0)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".model.") and left[0].endswith(".tmp.npz")
    (tmp_path / f".model.{os.getpid()}.abcdefgh.tmp.npz").write_bytes(b"a live write of this process")
    with _files.atomic_path(path) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".model.{os.getpid()}.abcdefgh.tmp.npz", "model.npz"]
    assert path.read_bytes() == b"whole"


def test_folders_that_cannot_be_swapped_whole_are_refused(tmp_path, monkeypatch):
    from shapekit.errors import ShapekitError

    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for dest in (".", "..", str(work), "/"):
        with pytest.raises(ShapekitError, match="a folder of its own"):
            with _files.atomic_folder(dest):
                pass
    # a symbolic link to a folder: the folder it points to is swapped, the link stays
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with _files.atomic_folder(link) as stage:
        (stage / "a.txt").write_text("new")
    assert link.is_symlink() and (link / "a.txt").read_text() == "new" and leftovers(real) == []
