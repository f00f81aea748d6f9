"""A reader completes a short study by clicking, in Debian's headless Chromium (Playwright).

Also checks what only a browser shows: the page's script runs under its Content-Security-Policy
(no console errors), window/level changes the drawn pixels, and pause/continue resumes.
Skips (with the reason) where Chromium or Playwright is missing; `.ci/run` installs Chromium.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from readerstudy_data import make_study, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install -y chromium): the reader page is not "
    "driven in a browser",
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (test extra)"
)

CENTRE_PIXEL = """() => {
  const c = document.getElementById('canvas');
  return Array.from(c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data);
}"""


def test_reader_completes_study_by_clicking(tmp_path):
    study, links = make_study(tmp_path, n_real=3, n_synthetic=3, readers=1)
    proc, base = start_server(study)
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + links.readers["reader1"])
            page.wait_for_selector("#canvas:not([hidden])")  # the script ran: W/L is on
            assert page.is_hidden("#image")
            before = page.evaluate(CENTRE_PIXEL)
            page.fill("#window", "40")  # a narrow window stretches contrast
            page.dispatch_event("#window", "input")
            after = page.evaluate(CENTRE_PIXEL)
            assert before != after or before[0] in (0, 255), (before, after)
            for k in range(6):
                if k == 2:  # pause, then come back
                    page.click("#pause")
                    assert "2 of 6" in page.inner_text("main")
                    page.click("#resume")
                assert page.inner_text("#number") == str(k + 1)
                page.check(f"input[name=realism][value='{k % 5 + 1}']")
                if k == 0:
                    page.fill("textarea[name=comment]", "edges look too smooth")
                page.click("#synthetic" if k % 2 else "#real")
                page.wait_for_load_state()
            assert page.inner_text("#done") == "Thank you"
            browser.close()
    finally:
        proc.terminate()
        proc.wait()
    assert not errors, errors
    con = sqlite3.connect(study / "study.sqlite")
    rows = con.execute("SELECT label, realism, comment FROM answers ORDER BY position").fetchall()
    assert [r[0] for r in rows] == ["real", "synthetic"] * 3
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5, 1]
    assert rows[0][2] == "edges look too smooth"
