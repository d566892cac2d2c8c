"""`flowrl plot` writes real figures: a PNG with the groups' curves in it, an SVG whose legend
names the groups."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from flowrl.cli import main
from tests.experiments.conftest import flowrl

BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's C0 and C1


def pixels_near(image: np.ndarray, color: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(image[..., :3].astype(int) - color).max(-1) <= tol).sum())


def test_png_shows_a_curve_per_group(synthetic_runs, tmp_path):
    runs, _ = synthetic_runs
    out = tmp_path / "figs" / "curves.png"
    done = flowrl("plot", str(runs), "--by", "model.attention", "--out", str(out), "--reps", "300")
    assert done.returncode == 0, done.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    height, width, _ = image.shape
    assert width >= 1200 and height >= 400  # 2 curve panels, bars, profile
    white = (image >= 250).all(-1)
    assert 0.02 < 1 - white.mean() < 0.6  # drawn on, not a blank or a filled canvas
    for color in (BLUE, ORANGE):  # each group's lines and bars are in the picture
        assert pixels_near(image, color) > 500


def test_svg_names_the_groups(synthetic_runs, tmp_path):
    runs, _ = synthetic_runs
    out = tmp_path / "curves.svg"
    done = flowrl(
        "plot",
        str(runs),
        "--by",
        "model.attention",
        "--out",
        str(out),
        "--band",
        "ci",
        "--reps",
        "300",
    )
    assert done.returncode == 0, done.stderr
    svg = out.read_text()
    texts = [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert "flow" in texts and "softmax" in texts and "model.attention" in texts
    assert "tests/a-v0" in texts and "tests/b-v0" in texts  # a curve panel per dataset
    assert "performance profile" in texts


def test_plot_rejects_an_unknown_format(synthetic_runs, tmp_path, capsys):
    runs, _ = synthetic_runs
    assert main(["plot", str(runs), "--out", str(tmp_path / "fig.jpgg")]) == 2
    assert ".png, .svg or .pdf" in capsys.readouterr().err
    assert not (tmp_path / "fig.jpgg").exists()
