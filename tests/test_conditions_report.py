"""Per-class grids in the report of a conditional run (rows top to bottom), Figure 4 too."""

import json

import numpy as np
from tests.test_faithfulness import write_source
from tests.test_generate import tiny_generator

from mrisynth.cli.report import write_report
from mrisynth.data.pack import pack_archive
from mrisynth.report.grids import decode_png
from mrisynth.training.checkpoint import save_snapshot

NAMES = ["pos0.00-0.33", "pos0.33-0.67", "pos0.67-1.00"]


def _run(tmp_path, names):
    data = pack_archive(write_source(tmp_path / "src", patients=3, slices=6),
                        tmp_path / "data.zip", labels="position:3").path
    run = tmp_path / "00000-cond"
    G = tiny_generator(c_dim=3)
    state = {"kimg": 2, "resolved": {"classes": names} if names else {}}
    save_snapshot(run / "network-snapshot-000002.safetensors", G=G, D=None, G_ema=G, state=state)
    (run / "training_options.json").write_text(json.dumps(
        {"user": {"data": str(data), "cond": True}, "resolution": 16, "classes": names}))
    return run, G


def test_report_shows_one_row_per_class(tmp_path):
    run, _ = _run(tmp_path, NAMES)
    html = write_report(run, tmp_path / "report", device="cpu", panel_images=4)
    out = html.parent
    page = html.read_text()
    assert "Generated images per class" in page and "classes.png" in page
    assert "from the top of the abdomen" in page
    assert "fig4-real-vs-generated.png" in page  # a conditional G no longer stops Figure 4
    for i in range(3):  # each row alone: the same 8 latents asked for class i
        grid = decode_png((out / f"class-{i:02d}.png").read_bytes())
        assert grid.shape == (1, 16, 16 * 8)
    rows = [decode_png((out / f"class-{i:02d}.png").read_bytes()) for i in range(3)]
    assert not np.array_equal(rows[0], rows[2])  # the class changes the images


def test_no_class_names_no_class_figure(tmp_path):
    run, _ = _run(tmp_path, None)
    html = write_report(run, tmp_path / "report", device="cpu", panel_images=2)
    assert "classes.png" not in html.read_text()
    assert not (html.parent / "class-00.png").exists()


def test_bad_class_names_cost_the_figure_not_the_report(tmp_path, caplog):
    """Repeated names (or as many names as classes, not) stopped the whole report with an
    Error; now the page is written without the per-class figure and a warning says why."""
    for names, why in ((["a", "a", "b"], "names repeat"), (["a", "b"], "2 class names for 3")):
        caplog.clear()
        (tmp_path / why).mkdir()
        run, _ = _run(tmp_path / why, names)
        html = write_report(run, run / "report", device="cpu", panel_images=2)
        assert "classes.png" not in html.read_text()
        assert "per-class figure left out" in caplog.text and why in caplog.text


def test_caption_says_how_rows_are_ordered():
    """Sequence x position models run top to bottom within each sequence; a sequence whose
    name holds 'pos' is no position class."""
    from mrisynth.report.classes import ClassGrids, caption

    def grids(names):
        return ClassGrids(names, np.zeros((len(names), 2, 1, 4, 4), np.uint8), [0, 1], "s")

    assert "Rows from the top" in caption(grids(NAMES))
    pairs = [f"{s}+{p}" for s in ("t1_in", "t2spir") for p in NAMES]
    assert "within each sequence" in caption(grids(pairs))
    for names in (["t1_in", "t2spir"], ["t1_pos", "t2_postcontrast"]):
        assert "top of the abdomen" not in caption(grids(names))
