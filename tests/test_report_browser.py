"""The report in a real browser: Debian's headless Chromium renders it and we look at the result.

Checks what parsing the HTML cannot: the page is not blank, the summary box is drawn at the
top, every image loads with its natural size, and an enlarged 16 px grid shows each tile at
least 128 px wide. Skips (with the reason) where no `chromium` is installed; CI installs it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrisynth.cli.report import write_report
from mrisynth.imaging import encode_png, make_grid

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install -y chromium): the report's "
    "rendering in a browser is not checked",
)
WIDTH, HEIGHT = 1280, 2000
TILE = 16  # px: the run's resolution; the report must enlarge it 8x to reach 128 px

# Test-only probe appended to a copy of the page (the report itself has no scripts): after
# load it writes what the browser laid out into the DOM, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute("src"), done: i.complete,
    w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}));
  const box = document.getElementById("summary");
  const out = {images: imgs, first: document.querySelector("h1").nextElementSibling.id,
    boxTop: box ? box.getBoundingClientRect().top : -1,
    boxItems: box ? [...box.querySelectorAll("li")].map(li => li.className) : []};
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _run_folder(root: Path) -> Path:
    """A short run: options, an 8 x 4 grid of 16 px tiles, a diversity warning, an audit."""
    run = root / "00000-browser"
    run.mkdir()
    (run / "training_options.json").write_text(json.dumps({"resolution": TILE}))
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (32, 1, TILE, TILE), dtype=np.uint8)
    (run / "reals.png").write_bytes(encode_png(make_grid(tiles, cols=8)))
    verdict = {
        "topic": "diversity",
        "level": "warning",
        "title": "Mode collapse",
        "text": "Generated images are far more alike than real ones.",
    }
    record = {
        "metric": "diversity64",
        "snapshot": "network-snapshot-000004.safetensors",
        "kimg": 4,
        "results": {"diversity64_msssim_gen": 0.62, "diversity64_msssim_real": 0.31},
        "num_gen": 64,
        "num_real": 32,
        "detector": None,
        "reference_exact": False,
        "timestamp": 1.0,
        "verdicts": [verdict],
    }
    (run / "metric-diversity64.jsonl").write_text(json.dumps(record) + "\n")
    return run


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("browser")
    page = write_report(_run_folder(root), root / "report", panel_images=0)
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    shot = root / "shot.png"
    res = _chromium(root, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), res.stderr[-2000:]
    dom = _chromium(root, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, dom.stderr[-2000:]
    return {"shot": shot, "probe": json.loads(html.unescape(m.group(1)))}


def test_the_page_renders_with_the_summary_box_at_the_top(rendered):
    img = np.asarray(Image.open(rendered["shot"]).convert("RGB")).astype(np.int16)
    assert img.shape == (HEIGHT, WIDTH, 3)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not blank
    top = img[:400]
    box_fill = np.all(np.abs(top - (0xF4, 0xF7, 0xFB)) <= 2, axis=2)  # #summary background
    warning_fill = np.all(np.abs(top - (0xFD, 0xEC, 0xEA)) <= 2, axis=2)  # its warning line
    assert box_fill.sum() > 20_000 and warning_fill.sum() > 5_000
    probe = rendered["probe"]
    assert probe["first"] == "summary" and 0 <= probe["boxTop"] < 150
    assert probe["boxItems"][0] == "warning"  # warnings first
    assert "info" in probe["boxItems"]  # the copy test that was not run is named


def test_images_load_at_natural_size_and_grid_tiles_are_large_on_screen(rendered):
    images = {i["src"]: i for i in rendered["probe"]["images"]}
    assert images, "no images on the page"
    for src, i in images.items():
        assert i["done"] and i["w"] > 0 and i["h"] > 0, src
    reals = images["reals.png"]
    assert reals["w"] == 8 * TILE * 8  # enlarged 8x in the file
    assert reals["shown"] / 8 >= 128  # each of the 8 columns at least 128 px on screen
