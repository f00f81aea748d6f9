"""Time a 40-image reader study end to end and take the README's screenshots.

    python benchmarks/readerstudy_timing.py --real demo-out/data.zip \
        --synthetic demo-out/runs/00000-demo --outdir /tmp/rs-bench [--shots docs/images]

create (20 real + 20 generated from the snapshot, 3 readers) -> serve -> reader1 answers all 40
by clicking in headless Chromium (a scripted reader: right about 2 times in 3, realism to
match) while readers 2 and 3 answer over plain HTTP -> analyze. Prints seconds per stage.
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from readerstudy_data import start_server

FIELD = re.compile(r'name="(csrf|item)" value="([^"]+)"')


def mrisynth(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mrisynth", *args], check=True, capture_output=True)
    return time.perf_counter() - t


def scripted_choice(truth: str, rng: random.Random) -> tuple[str, int]:
    right = rng.random() < 2 / 3
    label = truth if right else ({"real", "synthetic"} - {truth}).pop()
    realism = rng.choice([4, 5]) if label == "real" else rng.choice([1, 2, 3])
    return label, realism


def truths(study: Path) -> dict[str, dict[str, str]]:
    """Organiser's view: reader link token hash is unknown here, so key by opaque id."""
    con = sqlite3.connect(study / "study.sqlite")
    rows = con.execute(
        "SELECT i.opaque, im.truth FROM items i JOIN images im ON im.id = i.image_id"
    ).fetchall()
    return dict(rows)


def answer_http(base: str, link: str, truth: dict, rng: random.Random) -> None:
    while True:
        with urllib.request.urlopen(base + link) as r:
            fields = dict(FIELD.findall(r.read().decode()))
        if not fields:
            return
        label, realism = scripted_choice(truth[fields["item"]], rng)
        data = {**fields, "label": label, "realism": str(realism)}
        urllib.request.urlopen(base + link + "/answer", urllib.parse.urlencode(data).encode())


def answer_browser(base: str, link: str, truth: dict, rng: random.Random, shots: Path | None):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 900, "height": 1050})
        page.goto(base + link)
        n = 0
        while page.query_selector("#answer"):
            page.wait_for_selector("#canvas:not([hidden])")
            item = page.get_attribute("input[name=item]", "value")
            label, realism = scripted_choice(truth[item], rng)
            page.check(f"input[name=realism][value='{realism}']")
            if shots and n == 0:
                page.fill("textarea[name=comment]", "liver edge looks plausible")
                page.screenshot(path=str(shots / "reader-page.png"))
            page.click(f"#{label}")
            page.wait_for_load_state()
            n += 1
        browser.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", required=True)
    ap.add_argument("--synthetic", required=True)
    ap.add_argument("--outdir", type=Path, required=True)
    ap.add_argument("--shots", type=Path, default=None)
    a = ap.parse_args()
    study = a.outdir / "study"
    times = {}
    times["create"] = mrisynth(
        "reader-study", "create", "--real", a.real, "--synthetic", a.synthetic,
        "--n-real", "20", "--n-synthetic", "20", "--readers", "3", "--outdir", str(study),
        "--device", "cpu",
    )  # fmt: skip
    links = dict(line.split() for line in (study / "links.txt").read_text().splitlines())
    t = time.perf_counter()
    proc, base = start_server(study)
    times["serve (start)"] = time.perf_counter() - t
    rng = random.Random(0)
    try:
        truth = truths(study)
        t = time.perf_counter()
        n = answer_browser(base, links["reader1"], truth, rng, a.shots)
        times[f"answer {n} images in Chromium"] = time.perf_counter() - t
        for r in ("reader2", "reader3"):
            answer_http(base, links[r], truth, rng)
    finally:
        proc.terminate()
        proc.wait()
    times["analyze"] = mrisynth("reader-study", "analyze", str(study))
    if a.shots:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = b.new_page(viewport={"width": 1100, "height": 900})
            page.goto((study / "analysis" / "index.html").resolve().as_uri())
            page.screenshot(path=str(a.shots / "reader-analysis.png"), full_page=True)
            b.close()
    for k, v in times.items():
        print(f"{k:32s} {v:7.2f} s")
    print(f"{'total':32s} {sum(times.values()):7.2f} s")


if __name__ == "__main__":
    main()
