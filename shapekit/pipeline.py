"""The main job: the whole shapekit pipeline on data it generates itself.

:func:`run_demo` renders synthetic faces (``shapekit.data.synth``: procedurally
generated, not photographs), fits a point distribution model, writes soft landmarks,
trains the tough teacher, the tolerant teacher, a plain student and the KD-Loss
student briefly, evaluates them on held-out faces, fits an active shape model with no
network at all, and writes a Markdown report with its plots. ``shapekit demo`` calls it.

Every stage writes its files atomically into ``out``; ``report.md`` is written last.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shapekit import metrics, weights
from shapekit._files import atomic_open
from shapekit.errors import ShapekitError
from shapekit.io import read, read_image, write_like
from shapekit.viz.curves import plot_ced, plot_training_curves
from shapekit.viz.landmarks import plot_sample_grid
from shapekit.viz.shape import plot_modes, plot_soft_landmarks


@dataclass
class DemoConfig:
    """Sizes of the main job (run times: benchmarks/RESULTS.md, "The default demo with ImageNet starts").

    ``n_train`` / ``n_val`` synthetic faces of ``image_size`` pixels; networks see
    ``input_size`` crops and train ``epochs`` epochs each; ``quick`` shrinks everything
    for a smoke test; ``train`` and ``asm`` switch those stages off.

    ``pretrained``: ``"auto"`` starts every network that has an installable ImageNet file
    (:mod:`shapekit.weights`) from it, fetching the file on first use, and starts from
    random weights, saying so, when the file cannot be had; ``"imagenet"`` makes a missing
    file an error; ``"none"`` always starts from random weights. ``teacher`` defaults to
    the student's network (MobileNetV2) with ImageNet starts and to ResNet-18 without
    them (a teacher trained from random weights must be larger than its student to be
    better than it; see benchmarks/RESULTS.md). When the teacher is the student's network,
    the tough teacher is also the plain model: same network, start, labels, loss and seed,
    so training it twice would give the same weights; it is trained once and reported in
    both rows.
    """

    n_train: int = 512
    n_val: int = 128
    image_size: int = 160
    input_size: int = 96
    epochs: int = 6
    batch_size: int = 32
    teacher: str | None = None
    student: str = "mobilenetv2"
    pretrained: str = "auto"
    variance: float = 0.9
    seed: int = 0
    device: str = "auto"
    train: bool = True
    asm: bool = True
    workers: int = 1

    def __post_init__(self):
        for name in ("n_train", "n_val", "image_size", "input_size", "epochs", "batch_size", "workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ShapekitError(f"{name}: expected a positive integer, got {v!r}")
        if self.n_train < 8 or self.n_val < 2:
            raise ShapekitError(f"n_train, n_val: the demo needs at least 8 training and 2 validation faces, "
                                f"got {self.n_train} and {self.n_val}")
        if self.pretrained not in ("auto", "imagenet", "none"):
            raise ShapekitError(f"pretrained: expected 'auto', 'imagenet' or 'none', got {self.pretrained!r}")
        if self.input_size < 32:
            raise ShapekitError(f"input_size: expected at least 32 pixels, got {self.input_size}")
        if not 0 < self.variance <= 1:
            raise ShapekitError(f"variance: expected a fraction in (0, 1], got {self.variance!r}")

    @classmethod
    def quick(cls, **kw):
        """Return a tiny configuration for smoke tests (48 + 16 faces of 96 px, 64 px input, one epoch)."""
        base = dict(n_train=48, n_val=16, image_size=96, input_size=64, epochs=1, batch_size=16,
                    teacher="mobilenetv2")
        base.update(kw)
        return cls(**base)

    @classmethod
    def full(cls, **kw):
        """Return the longer run: about five times the faces and four times the epochs of the default."""
        base = dict(n_train=2400, n_val=400, epochs=4 * cls.epochs)
        base.update(kw)
        return cls(**base)


class _Log:
    def __init__(self, verbose):
        self.verbose = verbose
        self.t0 = time.perf_counter()
        self.timings = {}

    def stage(self, name):
        log = self

        class _Stage:
            def __enter__(self):
                self.t = time.perf_counter()
                if log.verbose:
                    print(f"[{time.perf_counter() - log.t0:6.1f}s] {name} ...", flush=True)
                return self

            def __exit__(self, *exc):
                log.timings[name] = time.perf_counter() - self.t
                return False

        return _Stage()

    def say(self, text):
        if self.verbose:
            print(f"         {text}", flush=True)


def _pct(x):
    return f"{100 * x:.2f}%"


#: NME threshold of the report's failure rates and AUCs (``FR@0.08``, ``AUC@0.08``) and
#: of its CED plot: one convention everywhere.
THRESHOLD = 0.08
_FR, _AUC = f"fr_{THRESHOLD:.2f}", f"auc_{THRESHOLD:.2f}"
#: the active shape model is fitted to the first ASM_FACES validation faces (the networks' figures
#: on the same faces are kept for the comparison)
ASM_FACES = 40
#: How the report names each role's network.
_ROLE_NAMES = {"tough": "tough teacher", "tolerant": "tolerant teacher", "plain": "plain student",
               "student": "KD-Loss student"}


def run_demo(out, config=None, verbose=True):
    """Run the main job into folder ``out`` and return a summary dict (also ``out/summary.json``).

    Summary keys: ``data`` (counts, sizes), ``shape_model`` (modes, variance),
    ``soft`` (mean hard-to-soft displacement in NME units), ``models`` (validation
    figures per role), ``asm`` (NME of classical fitting), ``timings`` (seconds per
    stage), ``files`` (what was written).
    """
    # local: torch, numba and scipy load only when the job runs (cli/commands/demo.py reads DemoConfig at start-up)
    from shapekit.data import synth
    from shapekit.shape import PointDistributionModel, soft_landmarks

    cfg = config or DemoConfig()
    if cfg.train:
        from shapekit._device import resolve_device  # local: torch (see run_demo)

        resolve_device(cfg.device)  # a bad --device is refused before any work
        from shapekit.nn import list_models  # local: torch (see run_demo)

        for name in (cfg.teacher or "resnet18", cfg.student):  # (the teacher default is one of these)
            if name not in list_models():
                raise ShapekitError(f"model: unknown network {name!r} (expected one of {', '.join(list_models())})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(verbose)
    summary = {"config": asdict(cfg), "synthetic": True, "note": synth.SYNTHETIC_NOTE}
    files = []

    # 1. data ---------------------------------------------------------------------------------
    with log.stage(f"rendering {cfg.n_train} + {cfg.n_val} synthetic faces"):
        train_dir, val_dir = out / "data" / "train", out / "data" / "val"
        synth.write_dataset(train_dir, cfg.n_train, seed=cfg.seed, size=cfg.image_size, workers=cfg.workers)
        # validation faces: same generator, disjoint face indices
        synth.write_dataset(val_dir, cfg.n_val, seed=cfg.seed, start=cfg.n_train, size=cfg.image_size,
                            workers=cfg.workers)
        train_ann, val_ann = read(train_dir, format="pts"), read(val_dir, format="pts")
        summary["data"] = {"n_train": len(train_ann), "n_val": len(val_ann), "image_size": cfg.image_size,
                           "train_dir": str(train_dir), "val_dir": str(val_dir)}
        show = [read_image(m["image"]) for m in train_ann.meta[:8]]
        files.append(plot_sample_grid(show, train_ann.shapes[:8], out / "samples.png", schema="ibug68",
                                      suptitle="synthetic training faces (generated, not photographs)"))

    # 2. shape model --------------------------------------------------------------------------
    with log.stage("fitting the point distribution model"):
        pdm = PointDistributionModel(n_components=None, schema="ibug68").fit(train_ann.shapes)
        pdm.save(out / "shape_model.npz")
        files.append(out / "shape_model.npz")
        ratio = np.asarray(pdm.explained_variance_ratio_)
        cum = np.cumsum(ratio)
        n90 = int(np.searchsorted(cum, cfg.variance) + 1)
        files.append(plot_modes(pdm, out / "shape_modes.png", n_modes=3, schema="ibug68",
                                title="mean shape and ±3√λ along the first modes"))
        rec = pdm.reconstruction_error(val_ann.shapes, n_components=n90)
        summary["shape_model"] = {
            "n_points": int(pdm.n_points_), "n_modes": int(pdm.n_components_),
            "modes_for_variance": n90, "variance": cfg.variance,
            "first_mode_ratios": [float(r) for r in ratio[:5]],
            "val_reconstruction_error_px": float(np.mean(rec)),
        }
        log.say(f"{n90} of {pdm.n_components_} modes explain {cfg.variance:.0%} of the variance")

    # 3. soft landmarks -----------------------------------------------------------------------
    with log.stage("soft landmarks"):
        soft = soft_landmarks(train_ann.shapes, pdm, variance=cfg.variance)
        write_like(train_ann, soft, out / "data" / "train_soft")
        disp = metrics.nme(soft, train_ann.shapes)
        files.append(plot_soft_landmarks(train_ann.shapes, soft, out / "soft_landmarks.png", schema="ibug68",
                                         images=[read_image(m["image"]) for m in train_ann.meta[:6]],
                                         title=f"hard (ground truth) vs soft ({cfg.variance:.0%} of variance)"))
        summary["soft"] = {"mean_displacement_nme": float(np.mean(disp)),
                           "max_displacement_nme": float(np.max(disp)), "folder": str(out / "data" / "train_soft")}
        log.say(f"mean hard->soft displacement {_pct(np.mean(disp))} of the inter-ocular distance")

    # 4. deep models and the mean-shape baseline ----------------------------------------------
    errors = {}
    if cfg.train:
        summary["models"], summary["baseline"], errors = _train_all(cfg, train_ann, val_ann, soft, out, log, files)

    # 5. classical active shape model ---------------------------------------------------------
    if cfg.asm:
        summary["asm"], asm_errors = _asm_stage(cfg, train_ann, val_ann, pdm, out, log, files)
        errors[f"active shape model ({len(asm_errors)} faces)"] = asm_errors
    if cfg.train:
        files.append(plot_ced(errors, out / "ced.png", threshold=THRESHOLD,
                              title="validation CED, synthetic faces"))

    summary["timings"] = {k: round(v, 2) for k, v in log.timings.items()}
    summary["total_seconds"] = round(time.perf_counter() - log.t0, 1)
    summary["files"] = [str(Path(f).relative_to(out)) for f in files]
    with atomic_open(out / "summary.json") as fh:
        json.dump(summary, fh, indent=2)
    _write_report(out, summary)
    if verbose:
        print(f"[{summary['total_seconds']:6.1f}s] done: {out / 'report.md'}", flush=True)
    return summary


def _datasets(cfg, train_ann, val_ann, soft):
    # local: torch (see run_demo)
    from shapekit.data.augment import default_augmentation
    from shapekit.data.datasets import LandmarkDataset

    train_images = np.stack([read_image(m["image"]) for m in train_ann.meta])
    val_images = np.stack([read_image(m["image"]) for m in val_ann.meta])
    aug = default_augmentation(schema="ibug68", seed=cfg.seed, strength=0.6)
    train_ds = LandmarkDataset(train_images, train_ann.shapes, size=cfg.input_size, augment=aug, soft=soft,
                               schema="ibug68", names=[m["name"] for m in train_ann.meta])
    val_ds = LandmarkDataset(val_images, val_ann.shapes, size=cfg.input_size, schema="ibug68",
                             names=[m["name"] for m in val_ann.meta])
    return train_ds, val_ds


def _train_all(cfg, train_ann, val_ann, soft, out, log, files):
    # local: torch (see run_demo)
    from shapekit.train import fit_role
    from shapekit.train.evaluate import evaluate
    from shapekit.train.role import get_role

    train_ds, val_ds = _datasets(cfg, train_ann, val_ann, soft)
    with log.stage("mean-shape baseline"):
        baseline, base_errors = _mean_shape_baseline(train_ds, val_ds)
        log.say(f"validation NME {_pct(baseline['nme'])} when every face gets the training mean shape")
    starts = _imagenet_starts(cfg, log)
    teacher = _teacher_name(cfg, starts)
    roles = [("tough", teacher), ("tolerant", teacher), ("plain", cfg.student), ("student", cfg.student)]
    labels = {"tough": "tough teacher (hard)", "tolerant": "tolerant teacher (soft)",
              "plain": "plain student (L2)", "student": "KD-Loss student"}
    results, rows, errors = {}, {}, {"mean shape (baseline)": base_errors}
    trained = {}  # (network, recipe) -> the role that trained it: the same run needs no second training
    for role, model_name in roles:
        spec = get_role(role)
        train_cfg = _train_config(cfg, model_name, log.verbose, starts.get(model_name))
        recipe = spec.recipe(train_cfg.head)
        same = trained.setdefault((model_name, recipe), role)
        shared = same != role
        what = f"the {_ROLE_NAMES[same]}, trained once" if shared else f"{cfg.epochs} epochs"
        with log.stage(f"{'reusing' if shared else 'training'} the {role} "
                       f"{'teacher' if spec.is_teacher else 'model'} ({model_name}, {what})"):
            if shared:
                res = results[same]
            else:
                teachers = tuple(results[t].model for t in spec.teachers) or None
                res = fit_role(role, train_ds, val_ds, train_cfg, teachers=teachers, out=out / "runs" / role)
            results[role] = res
            ev = evaluate(res.model, val_ds, device=cfg.device)
            label = labels[role]
            if shared:  # one curve for the one model, not two drawn on top of each other
                del errors[labels[same]]
                label = f"{_ROLE_NAMES[same]} = {_ROLE_NAMES[role]} ({recipe[0]}, {recipe[1].upper()})"
            errors[label] = ev.errors
            rows[role] = {"model": model_name, "start": "ImageNet" if starts.get(model_name) else "random",
                          "trained_as": same,
                          "nme": ev.metrics["nme"], _FR: ev.metrics[_FR],
                          _AUC: ev.metrics[_AUC], "best_epoch": res.best_epoch,
                          "epochs": len(res.history), "first_nme": _first_val_nme(res.history),
                          "nme_asm_faces": float(np.mean(ev.errors[:ASM_FACES])),
                          "checkpoint": str(res.best_path) if res.best_path else None,
                          "n_parameters": int(sum(p.numel() for p in res.model.parameters()))}
            if res.history and not shared:
                files.append(plot_training_curves(res.history, out / f"curves_{role}.png", title=label))
            log.say(f"validation NME {_pct(ev.metrics['nme'])}")
    # predictions of the KD student on a few validation faces
    ev = evaluate(results["student"].model, val_ds, device=cfg.device)
    k = min(8, len(val_ann))
    files.append(plot_sample_grid([read_image(m["image"]) for m in val_ann.meta[:k]], ev.gt[:k],
                                  out / "predictions.png", schema="ibug68", extra=ev.pred[:k],
                                  titles=[f"NME {_pct(e)}" for e in ev.errors[:k]],
                                  labels=("ground truth", "KD-Loss student"),
                                  suptitle="KD-Loss student on held-out synthetic faces"))
    return rows, baseline, errors


def _imagenet_starts(cfg, log):
    """Return ``{model name: ImageNet weight file}`` for the demo's networks that can start from one."""
    if cfg.pretrained == "none":
        return {}
    names = {cfg.student, cfg.teacher or cfg.student}
    starts = {}
    for name in sorted(names):
        spec = weights.WEIGHTS.get(name)
        if spec is None or spec.kind != "imagenet":
            continue
        try:
            starts[name] = str(weights.get_weights(name, log=log.say))
        except weights.WeightsUnavailable as exc:
            if cfg.pretrained == "imagenet":
                raise
            log.say(f"{name} starts from random weights: {exc}")
    return starts


def _teacher_name(cfg, starts):
    """The teachers' network: ``cfg.teacher``, else the student's when it starts from ImageNet, else ResNet-18."""
    if cfg.teacher:
        return cfg.teacher
    return cfg.student if starts.get(cfg.student) else "resnet18"


def _train_config(cfg, model_name, verbose, pretrained=None):
    """Return the :class:`TrainConfig` of one demo network: where every network of the demo is set up.

    ``pretrained`` is the ImageNet file the network starts from (None: random weights).
    """
    from shapekit.train import TrainConfig  # local: torch (see run_demo)

    return TrainConfig(model=model_name, model_kwargs={"pretrained": pretrained} if pretrained else {},
                       epochs=cfg.epochs, batch_size=cfg.batch_size, lr=1e-3 if pretrained else 2e-3,
                       warmup_epochs=0.5, seed=cfg.seed, device=cfg.device, input_size=cfg.input_size,
                       channels_last=True, progress=verbose)


def _first_val_nme(history):
    return next((float(r["val_nme"]) for r in history if "val_nme" in r), None)


def _mean_shape_baseline(train_ds, val_ds):
    """Return ``(row, per-image NME)`` of predicting the training mean shape for every validation face.

    The mean is taken over the training crops without augmentation (crop pixels), so it
    sits in each validation crop as a network's output would; it is mapped back to the
    original image and scored there, like the networks (:func:`shapekit.train.evaluate.evaluate`).
    """
    from shapekit.train.evaluate import _to_original, compute_metrics  # local: torch (see run_demo)

    plain = copy.copy(train_ds)
    plain.augment = None
    crops = []
    for i in range(len(plain)):
        item = plain[i]
        shape = item["shape"].double().numpy().copy()
        shape[~item["mask"].numpy().astype(bool)] = np.nan
        crops.append(shape)
    mean = np.nanmean(np.stack(crops), axis=0)
    pred, gt, masks = [], [], []
    for i in range(len(val_ds)):
        item = val_ds[i]
        t = item["transform"].double().numpy()[None]
        m = item["mask"].numpy().astype(bool)
        g = item["shape"].double().numpy().copy()
        g[~m] = np.nan
        pred.append(_to_original(mean[None], t)[0])
        gt.append(_to_original(g[None], t)[0])
        masks.append(m)
    metrics, e = compute_metrics(np.stack(pred), np.stack(gt), np.stack(masks), schema=val_ds.schema,
                                 thresholds=(THRESHOLD,))
    return {"model": "training mean shape", "nme": metrics["nme"], _FR: metrics[_FR], _AUC: metrics[_AUC]}, e


def _asm_stage(cfg, train_ann, val_ann, pdm, out, log, files):
    from shapekit.asm import ActiveShapeModel  # local: numba and scipy (see run_demo)

    with log.stage("training and fitting the active shape model"):
        train_images = [read_image(m["image"], grey=True) for m in train_ann.meta]
        asm = ActiveShapeModel(schema="ibug68").fit(train_images, train_ann.shapes)
        asm.save(out / "asm.npz")
        files.append(out / "asm.npz")
        n = min(len(val_ann), ASM_FACES)
        t = time.perf_counter()
        fitted = []
        for m, gt in zip(val_ann.meta[:n], val_ann.shapes[:n]):
            image = read_image(m["image"], grey=True)
            lo, hi = np.nanmin(gt, 0), np.nanmax(gt, 0)
            fitted.append(asm.search(image, box=(lo[0], lo[1], hi[0], hi[1])))
        per_face = (time.perf_counter() - t) / n
        fitted = np.stack(fitted)
        e = metrics.nme(fitted, val_ann.shapes[:n])
        k = min(8, n)
        files.append(plot_sample_grid([read_image(m["image"]) for m in val_ann.meta[:k]], val_ann.shapes[:k],
                                      out / "asm_fits.png", schema="ibug68", extra=fitted[:k],
                                      titles=[f"NME {_pct(x)}" for x in e[:k]],
                                      labels=("ground truth", "active shape model"),
                                      suptitle="active shape model search from the landmark box"))
        log.say(f"ASM NME {_pct(np.mean(e))} on {n} faces, {1000 * per_face:.0f} ms per face")
        clip = asm.get_params().get("clip")  # the search's shape constraint, in standard deviations
        return {"nme": float(np.mean(e)), "median_nme": float(np.median(e)), "n_images": int(n),
                "clip": None if clip is None else float(clip),
                _FR: metrics.failure_rate(e, THRESHOLD), _AUC: metrics.auc(e, THRESHOLD),
                "ms_per_face": 1000 * per_face}, e


def _write_report(out, s):
    cfg = s["config"]
    lines = [
        "# shapekit main job",
        "",
        f"> {s['note']}",
        "",
        f"Run on {platform.node() or 'this machine'} ({platform.processor() or platform.machine()}), "
        f"{s['total_seconds']:.0f} s in all. Everything below was measured in this run; "
        "`summary.json` holds the same figures.",
        "",
        "## Data",
        "",
        f"{s['data']['n_train']} training and {s['data']['n_val']} validation faces of "
        f"{cfg['image_size']}×{cfg['image_size']} pixels, 68 points (ibug68 layout), in "
        f"`data/train` and `data/val` as PNG + 300-W `.pts`.",
        "",
        "![samples](samples.png)",
        "",
        "## Shape model",
        "",
        f"Generalised Procrustes analysis and PCA of the {s['data']['n_train']} training shapes: "
        f"{s['shape_model']['n_modes']} modes, of which {s['shape_model']['modes_for_variance']} explain "
        f"{cfg['variance']:.0%} of the variance (first modes: "
        + ", ".join(f"{100 * r:.1f}%" for r in s["shape_model"]["first_mode_ratios"])
        + f"). Mean reconstruction error of validation shapes with those modes: "
        f"{s['shape_model']['val_reconstruction_error_px']:.2f} px. Model: `shape_model.npz` "
        "(`shapekit info shape_model.npz`).",
        "",
        "![modes](shape_modes.png)",
        "",
        "## Soft landmarks",
        "",
        f"The hard shapes projected onto the {cfg['variance']:.0%}-variance model, modes clipped to ±3√λ: mean "
        f"displacement {_pct(s['soft']['mean_displacement_nme'])} of the inter-ocular distance "
        f"(largest {_pct(s['soft']['max_displacement_nme'])}); written to `data/train_soft`.",
        "",
        "![soft](soft_landmarks.png)",
        "",
    ]
    if "models" in s:
        t = f"{THRESHOLD:.2f}"
        lines += [
            "## Teachers and students",
            "",
            f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''} each at {cfg['input_size']}×"
            f"{cfg['input_size']} input, "
            "same data, augmentation and seed; validation on the held-out faces (NME normalised by "
            f"the outer eye corners; FR@{t}: share of faces with NME above {t}; AUC@{t}: area under the "
            f"CED up to {t}, the threshold of the CED plot too). The baseline row predicts the training "
            "mean shape in every crop, placed as the networks' inputs are framed (square around the "
            "landmark box).",
            "",
            "Start: `ImageNet` means the network started from its installable ImageNet file "
            "(`shapekit weights`), `random` from random weights.",
            "",
            f"| role | model | start | parameters | NME | FR@{t} | AUC@{t} |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        b = s["baseline"]
        lines.append(f"| baseline | {b['model']} | – | 0 | {_pct(b['nme'])} | {_pct(b[_FR])} | {b[_AUC]:.3f} |")
        for role, r in s["models"].items():
            lines.append(f"| {role} | {r['model']} | {r.get('start', 'random')} | {r['n_parameters'] / 1e6:.2f} M | "
                         f"{_pct(r['nme'])} | {_pct(r[_FR])} | {r[_AUC]:.3f} |")
        if "asm" in s:
            a = s["asm"]
            lines.append(f"| classical | active shape model ({a['n_images']} faces) | – | – | {_pct(a['nme'])} | "
                         f"{_pct(a[_FR])} | {a[_AUC]:.3f} |")
        shared = [role for role, r in s["models"].items() if r.get("trained_as", role) != role]
        if shared:
            lines += ["", f"The {', '.join(shared)} row is the {s['models'][shared[0]]['trained_as']} teacher itself: "
                          "the teachers use the student's network, so that model would be the same network with "
                          "the same start, labels, loss and seed; it was trained once."]
        lines += ["", _interpretation(s), "", "![ced](ced.png)", "", "![predictions](predictions.png)", ""]
        for role, r in s["models"].items():
            if r.get("trained_as", role) == role:
                lines += [f"![{role}](curves_{role}.png)", ""]
    if "asm" in s:
        a = s["asm"]
        lines += [
            "## Active shape model",
            "",
            "Classical search (grey-level profiles, image pyramid, shape constrained to "
            + (f"±{a['clip']:g}√λ" if a.get("clip") else "the shape model") + ") from the "
            f"landmark box on {a['n_images']} validation faces: mean NME {_pct(a['nme'])}, median "
            f"{_pct(a['median_nme'])}, {a['ms_per_face']:.0f} ms per face.",
            "",
            "![asm](asm_fits.png)",
            "",
        ]
    lines += ["## Timings", "", "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timings"].items()]
    with atomic_open(out / "report.md") as fh:
        fh.write("\n".join(lines) + "\n")


def _interpretation(s):
    """Return one paragraph reading the report's table: baseline, convergence, KD, ASM."""
    models, base = s["models"], s["baseline"]["nme"]
    best = min(models, key=lambda r: models[r]["nme"])
    b = models[best]["nme"]
    parts = []
    beat = [r for r in models if models[r]["nme"] < base]
    if b < base:
        parts.append(f"The best network, the {_ROLE_NAMES[best]}, reaches {_pct(b)} NME against {_pct(base)} for the "
                     f"mean shape ({base / b:.1f}× lower); {len(beat)} of {len(models)} networks beat the "
                     "baseline, so they have learned more than where the average face sits in a crop.")
    else:
        parts.append(f"No network beats the mean-shape baseline ({_pct(base)}; the best, the {_ROLE_NAMES[best]}, "
                     f"is at {_pct(b)}): in this run they have not learned more than where the average face "
                     "sits in a crop.")
    last = [r for r in models if models[r]["best_epoch"] is not None and models[r]["best_epoch"] >= models[r]["epochs"]]
    if max(models[r]["epochs"] for r in models) <= 1:
        parts.append("One epoch each is too few to tell whether the networks were still improving.")
    elif last:
        parts.append(f"{len(last)} of {len(models)} networks had their best validation NME at the last epoch, "
                     "so they were still improving when the run stopped (`shapekit demo --full` trains longer).")
    else:
        parts.append("Every network's best validation NME came before its last epoch.")
    if "student" in models and "plain" in models:
        kd, pl = models["student"]["nme"], models["plain"]["nme"]
        parts.append(f"The KD-Loss student ({_pct(kd)}) is {'below' if kd < pl else 'not below'} the plain "
                     f"student with the same network and data ({_pct(pl)}); this is one short run with one "
                     "seed, not a measurement of the method.")
    if "asm" in s:
        a = s["asm"]["nme"]
        worse = [r for r in models if models[r]["nme_asm_faces"] > a]
        if len(worse) == len(models):
            verdict = "better than every network here"
        elif worse:
            verdict = f"better than {len(worse)} of the {len(models)} networks"
        else:
            verdict = "behind every network here"
        on_same = [models[r]["nme_asm_faces"] for r in models]
        parts.append(f"The classical active shape model, with no network at all, reaches {_pct(a)} on the first "
                     f"{s['asm']['n_images']} validation faces, where the networks reach {_pct(min(on_same))} to "
                     f"{_pct(max(on_same))}: {verdict}. It starts from the landmark box, the framing the "
                     "networks' crops get too, so neither side is given a harder start.")
    return " ".join(parts)
