"""The real server in a subprocess: two readers at once, a kill -9 mid-study, restart, resume;
and the `mrisynth reader-study` command lines."""

from __future__ import annotations

import os
import re
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.cli.readerstudy import is_loopback
from readerstudy_data import make_study, start_server, write_real, write_synthetic

FIELD = re.compile(r'name="(csrf|item)" value="([^"]+)"')


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.read().decode()


def answer_one(base: str, link: str, label: str) -> bool:
    """Answer the current item; False when the reader is done."""
    page = get(base + link)
    fields = dict(FIELD.findall(page))
    if not fields:
        return False
    data = urllib.parse.urlencode({**fields, "label": label, "realism": "3"}).encode()
    with urllib.request.urlopen(base + link + "/answer", data=data, timeout=20) as r:
        assert r.status == 200  # after the 303 to the next item
    return True


def count_answers(study: Path) -> dict[str, int]:
    import sqlite3

    con = sqlite3.connect(study / "study.sqlite")
    rows = con.execute(
        "SELECT r.name, COUNT(a.position) FROM readers r LEFT JOIN answers a "
        "ON a.reader_id = r.id WHERE r.role = 'reader' GROUP BY r.id"
    ).fetchall()
    con.close()
    return dict(rows)


def test_two_readers_kill_restart_resume(tmp_path):
    study, links = make_study(tmp_path, n_real=5, n_synthetic=5, readers=2)
    proc, base = start_server(study)
    try:
        errors: list[BaseException] = []

        def read(link: str, label: str, n: int) -> None:
            try:
                for _ in range(n):
                    assert answer_one(base, link, label)
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [
            threading.Thread(target=read, args=(links.readers["reader1"], "real", 4)),
            threading.Thread(target=read, args=(links.readers["reader2"], "synthetic", 6)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown: what was answered must be on disk
        proc.wait()
    assert count_answers(study) == {"reader1": 4, "reader2": 6}
    proc, base = start_server(study)
    try:
        assert 'id="number">5<' in get(base + links.readers["reader1"])  # resumes where it stopped
        while answer_one(base, links.readers["reader1"], "synthetic"):
            pass
        assert "Thank you" in get(base + links.readers["reader1"])
        with pytest.raises(urllib.error.HTTPError) as exc:
            get(base + "/r/" + "wrong" * 8)
        assert exc.value.code == 404
        assert "reader1" in get(base + links.organiser)
    finally:
        proc.terminate()
        proc.wait()
    assert count_answers(study) == {"reader1": 10, "reader2": 6}
    result = CliRunner().invoke(cli, ["reader-study", "analyze", str(study)])
    assert result.exit_code == 0, result.output
    assert (study / "analysis" / "results.json").is_file()


def test_serving_beyond_localhost_warns(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    study, _ = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    said: list[str] = []
    proc, _ = start_server(study, "--host", "0.0.0.0", said=said)
    proc.terminate()
    proc.wait()
    assert any("Warning: listening on 0.0.0.0" in line for line in said), said
    result = run_cli("serve", str(study), "--port", "99999")
    assert result.exit_code == 1 and result.output.startswith("Error:"), result.output


def run_cli(*args: str):
    return CliRunner().invoke(cli, ["reader-study", *args])


def test_cli_create_and_errors(tmp_path):
    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    common = ["--real", str(real), "--synthetic", str(synth)]
    ok = run_cli("create", *common, "--n-real", "3", "--n-synthetic", "3", "--readers", "2",
             "--outdir", str(tmp_path / "study"))  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("http://127.0.0.1:8000/r/") == 2  # links a newcomer can open
    assert "organiser: http://127.0.0.1:8000/o/" in ok.output
    bad = [
        [*common, "--outdir", str(tmp_path / "study")],  # not empty
        [*common, "--n-real", "x", "--outdir", str(tmp_path / "a")],
        [*common, "--n-real", "-3", "--outdir", str(tmp_path / "b")],
        [*common, "--readers", "1000", "--outdir", str(tmp_path / "c")],
        ["--real", str(tmp_path / "missing"), "--synthetic", str(synth), "--outdir", "d"],
        ["--real", str(synth / "grid.png"), "--synthetic", str(synth), "--outdir", "e"],
    ]
    for args in bad:
        result = run_cli("create", *args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for args in (["serve", str(real)], ["analyze", str(real)], ["analyze", str(tmp_path / "no")]):
        result = run_cli(*args)
        assert result.exit_code == 1 and result.output.startswith("Error:"), result.output
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "study.sqlite").write_bytes(b"not a database at all" * 10)
    result = run_cli("analyze", str(tmp_path / "fake"))
    assert result.exit_code == 1 and "not a readable" in result.output, result.output


def test_analyze_empty_study_has_no_nan(tmp_path):
    study, _ = make_study(tmp_path, n_real=2, n_synthetic=2, readers=2)
    result = run_cli("analyze", str(study))
    assert result.exit_code == 0, result.output
    text = (study / "analysis" / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    # nothing answered: every proportion is null
    assert '"value": null' in text


def test_report_section(tmp_path):
    """`mrisynth report RUN --reader-study STUDY` adds the study's figures, numbers in captions;
    reader comments (untrusted) never reach the page as markup."""
    from fake_runs import make_run, referenced_files

    study, links = make_study(tmp_path, n_real=2, n_synthetic=2, readers=1)
    from mrisynth.readerstudy.app import create_app

    client = create_app(study).test_client()
    for k in range(4):
        page = client.get(links.readers["reader1"]).get_data(as_text=True)
        data = dict(re.findall(r'name="(csrf|item)" value="([^"]+)"', page))
        comment = "<img src=x onerror=alert(1)>" if k == 0 else ""
        client.post(links.readers["reader1"] + "/answer",
                    data={**data, "label": "real", "realism": "4", "comment": comment})  # fmt: skip
    run = make_run(tmp_path / "runs", with_metrics=False)
    out = tmp_path / "report"
    args = ["report", str(run), "--panel", "0", "--outdir", str(out), "--reader-study", str(study)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text()
    assert "Reader study (visual Turing test)" in html
    assert "reader1: 4/4 answered; accuracy 0.50" in html
    assert "onerror" not in html
    assert {"reader-accuracy.png", "reader-roc.png"} <= set(referenced_files(html))
    assert run_cli("analyze", str(study)).exit_code == 0
    analysis = (study / "analysis" / "index.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in analysis and "<img src=x" not in analysis
    bad = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "runs")])
    assert bad.exit_code == 1 and bad.output.startswith("Error:"), bad.output
