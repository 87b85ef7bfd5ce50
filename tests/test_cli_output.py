"""What the CLI prints for people to read: ranges that cannot be misread."""

from __future__ import annotations

import re

from shapekit_cli.main import main


def test_stats_ranges_say_from_and_to(tmp_path, capsys):
    from shapekit.data.synth import write_dataset

    write_dataset(tmp_path / "faces", 6, seed=1, size=64)
    assert main(["stats", str(tmp_path / "faces")]) == 0
    out = capsys.readouterr().out
    assert "5th to 95th percentile" in out
    # "-13.6-13.2 deg" read as a subtraction: a number directly followed by "-" and a number
    figures = "\n".join(line for line in out.splitlines() if not line.startswith("source"))
    assert not re.search(r"\d-\d", figures), out
