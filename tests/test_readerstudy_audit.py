"""Issue 16 audit: the served study names no server software; inputs of the wrong class are
refused; analyze's numbers for a study answered through the app equal an independent
computation (closed forms and pair counting, not the scipy/statsmodels calls analyze makes)."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.readerstudy.analysis import write_analysis
from mrisynth.readerstudy.app import create_app
from readerstudy_data import make_study, start_server, write_real, write_synthetic

FIELD = re.compile(r'name="(csrf|item)" value="([^"]+)"')


def server_header(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.headers.get("Server", "")
    except urllib.error.HTTPError as e:  # 404/405 replies carry the header too
        return e.headers.get("Server", "")


def raw_reply(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(request)
        return s.recv(4096)


def test_replies_name_no_server_software(tmp_path):
    study, links = make_study(tmp_path, n_real=2, n_synthetic=2, readers=1)
    proc, base = start_server(study)
    try:
        link = links.readers["reader1"]
        with urllib.request.urlopen(base + link, timeout=20) as r:
            image = re.search(r'src="([^"]+/image/[^"]+)"', r.read().decode()).group(1)
        urls = [link, image, "/static/reader.js", "/", "/r/" + "x" * 43, link + "/answer"]
        servers = {server_header(base + u) for u in urls}
        # A request line werkzeug itself refuses is answered by the HTTP layer, not Flask.
        bad = raw_reply(base, f"GET {link} a b HTTP/1.1\r\n\r\n".encode())
    finally:
        proc.terminate()
        proc.wait()
    assert servers == {"reader-study"}
    assert b"Server: reader-study\r\n" in bad
    assert b"Werkzeug" not in bad and b"Python/" not in bad


def _study_parts(tmp_path: Path) -> dict[str, Path]:
    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    study, _ = make_study(tmp_path / "made")
    return {"real": real, "synth": synth, "study": study}


@pytest.mark.parametrize(
    ("real", "synthetic", "says"),
    [
        ("real", "real_copy", "--synthetic .*real_copy: its manifest.csv names patients"),
        ("synth", "synth_copy", "--real .*synth: `mrisynth generate` output"),
        ("study", "synth", "--real .*study: part of the reader study"),
        ("real", "study/images", "--synthetic .*images: part of the reader study"),
    ],
)
def test_inputs_of_the_wrong_class_are_refused(tmp_path, real, synthetic, says):
    """Old code built these studies: real patients' slices scored as 'synthetic', generated
    images as 'real', a study's mixed images as either, with every result silently false."""
    parts = _study_parts(tmp_path)
    shutil.copytree(parts["real"], tmp_path / "real_copy")
    shutil.copytree(parts["synth"], tmp_path / "synth_copy")
    where = {**parts, "real_copy": tmp_path / "real_copy", "synth_copy": tmp_path / "synth_copy"}
    where["study/images"] = parts["study"] / "images"
    out = tmp_path / "out"
    args = ["reader-study", "create", "--real", str(where[real]), "--synthetic"]
    args += [str(where[synthetic]), "--n-real", "2", "--n-synthetic", "2", "--readers", "1"]
    result = CliRunner().invoke(cli, [*args, "--outdir", str(out), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.match(f"Error: {says}", lines[0]), lines
    assert not out.exists()


def test_every_study_image_has_the_same_length(tmp_path):
    """Old code compressed each PNG, so a file's length followed its noise: here noisy 'real'
    and smooth 'synthetic' images, told apart by Content-Length alone. Stored uncompressed,
    every image a reader can fetch is the same number of bytes."""
    import numpy as np

    from mrisynth.imaging import encode_png
    from mrisynth.readerstudy.create import StudyPlan, create_study

    real = write_real(tmp_path / "real")
    synth = tmp_path / "synth"
    synth.mkdir()
    ramp = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8)[None] * 8
    for seed in range(6):
        (synth / f"seed{seed:06d}.png").write_bytes(encode_png(ramp + seed))
    plan = StudyPlan(real, synth, 6, 6, 2, seed=0, device="cpu")
    links = create_study(plan, tmp_path / "study")
    client = create_app(tmp_path / "study").test_client()
    lengths = set()
    for link in links.readers.values():
        for _ in range(12):
            page = client.get(link).get_data(as_text=True)
            image = re.search(r'src="([^"]+/image/[^"]+)"', page).group(1)
            reply = client.get(image)
            lengths |= {reply.content_length, len(reply.get_data())}
            fields = dict(FIELD.findall(page))
            client.post(link + "/answer", data={**fields, "label": "real"})
    assert len(lengths) == 1, lengths
    assert {p.stat().st_size for p in (tmp_path / "study" / "images").iterdir()} == lengths


# --- analyze against an independent computation -------------------------------------------

ANSWERS = {  # per reader: (label rule, realism rule) over (position, truth)
    "reader1": lambda pos, truth: (truth if pos % 3 else _other(truth), 1 + (pos * 7) % 5),
    "reader2": lambda pos, truth: ("synthetic" if pos % 2 else "real", 1 + pos % 5),
    "reader3": lambda pos, truth: (
        truth if pos % 4 else _other(truth),
        5 if truth == "real" else 2,
    ),
}


def _other(truth: str) -> str:
    return "real" if truth == "synthetic" else "synthetic"


def _truth_of(study: Path) -> dict[str, str]:
    con = sqlite3.connect(study / "study.sqlite")
    rows = con.execute(
        "SELECT i.opaque, im.truth FROM items i JOIN images im ON im.id = i.image_id"
    )
    out = dict(rows.fetchall())
    con.close()
    return out


def _answer_all(study: Path, links) -> list[tuple[str, str, str, int, str]]:
    """Every reader answers every image through the app; returns (reader, image, truth,
    realism, label) as the organiser knows them."""
    client, truth = create_app(study).test_client(), _truth_of(study)
    given = []
    for name, rule in ANSWERS.items():
        link, pos = links.readers[name], 0
        while fields := dict(FIELD.findall(client.get(link).get_data(as_text=True))):
            label, realism = rule(pos, truth[fields["item"]])
            reply = client.post(
                link + "/answer", data={**fields, "label": label, "realism": realism}
            )
            assert reply.status_code == 303
            given.append((name, fields["item"], truth[fields["item"]], realism, label))
            pos += 1
    return given


def wilson_closed_form(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p at 0.5: the symmetric distribution's two tails."""
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def auc_by_pairs(real: list[int], synth: list[int]) -> float:
    wins = sum((r > s) + 0.5 * (r == s) for r in real for s in synth)
    return wins / (len(real) * len(synth))


def mann_whitney_normal_p(real: list[int], synth: list[int]) -> float:
    """Two-sided Mann-Whitney p by the normal approximation with tie and continuity
    corrections (what a textbook does for samples this size with tied scores)."""
    n1, n2, both = len(real), len(synth), [*real, *synth]
    n = n1 + n2
    u = auc_by_pairs(real, synth) * n1 * n2
    ties = sum(both.count(v) ** 3 - both.count(v) for v in set(both))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    return math.erfc(z / math.sqrt(2))


def fleiss_by_definition(rows: list[list[str]]) -> float:
    """Fleiss (1971): P_bar against P_e from the category shares."""
    n, cats = len(rows[0]), ("real", "synthetic")
    p_i = [(sum(r.count(c) ** 2 for c in cats) - n) / (n * (n - 1)) for r in rows]
    share = [sum(r.count(c) for r in rows) / (n * len(rows)) for c in cats]
    p_e = sum(s * s for s in share)
    return (sum(p_i) / len(p_i) - p_e) / (1 - p_e)


def test_analysis_matches_an_independent_computation(tmp_path):
    study, links = make_study(tmp_path, n_real=6, n_synthetic=6, readers=3)
    given = _answer_all(study, links)
    results = json.loads(write_analysis(study).with_name("results.json").read_text())
    opaque_image = dict(
        sqlite3.connect(study / "study.sqlite").execute("SELECT opaque, image_id FROM items")
    )
    for row in [*results["readers"], results["pooled"]]:
        mine = [g for g in given if row["reader"] in (g[0], "all readers")]
        correct = sum(g[2] == g[4] for g in mine)
        synth = [g for g in mine if g[2] == "synthetic"]
        real = [g for g in mine if g[2] == "real"]
        tp, tn = sum(g[4] == "synthetic" for g in synth), sum(g[4] == "real" for g in real)
        for key, (k, n) in {
            "accuracy": (correct, len(mine)),
            "sensitivity": (tp, len(synth)),
            "specificity": (tn, len(real)),
        }.items():
            low, high = wilson_closed_form(k, n)
            got = row[key]
            assert (got["count"], got["total"]) == (k, n), (row["reader"], key)
            assert got["low"] == pytest.approx(low, abs=1e-9)
            assert got["high"] == pytest.approx(high, abs=1e-9)
        assert row["binomial_p"] == pytest.approx(binomial_two_sided(correct, len(mine)))
        expected_auc = auc_by_pairs([g[3] for g in real], [g[3] for g in synth])
        assert row["auc_realism"] == pytest.approx(expected_auc)
    pooled_real = [g[3] for g in given if g[2] == "real"]
    pooled_synth = [g[3] for g in given if g[2] == "synthetic"]
    expected_p = mann_whitney_normal_p(pooled_real, pooled_synth)
    assert results["realism"]["mannwhitney_p"] == pytest.approx(expected_p, rel=1e-9)
    by_image: dict[int, list[str]] = {}
    for g in given:
        by_image.setdefault(opaque_image[g[1]], []).append(g[4])
    assert results["agreement"]["images"] == 12
    kappa = fleiss_by_definition(list(by_image.values()))
    assert results["agreement"]["fleiss_kappa"] == pytest.approx(kappa)
    for im in results["images"]:
        truths = {g[2] for g in given if opaque_image[g[1]] == im["image"]}
        wrong = sum(lab != im["truth"] for lab in by_image[im["image"]])
        assert truths == {im["truth"]} and im["wrong"] == wrong


def test_a_damaged_database_is_one_error_line(tmp_path):
    """Old code: a garbled page past the schema was a sqlite3.DatabaseError traceback halfway
    through analyze (and a 500 to readers); now every page is checked when a study opens."""
    study, links = make_study(tmp_path, n_real=6, n_synthetic=6, readers=3)
    _answer_all(study, links)
    con = sqlite3.connect(study / "study.sqlite")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")  # every page in the one file
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    pristine = (study / "study.sqlite").read_bytes()
    refused = 0
    for page in range(len(pristine) // page_size):
        garbage = bytes((page * 131 + i * 7) % 251 for i in range(page_size))
        start = page * page_size
        damaged = pristine[:start] + garbage + pristine[start + page_size :]
        (study / "study.sqlite").write_bytes(damaged)
        result = CliRunner().invoke(cli, ["reader-study", "analyze", str(study)])
        assert result.exit_code in (0, 1), (page, result.output)
        assert not isinstance(result.exception, sqlite3.DatabaseError), page
        if result.exit_code == 1:
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"Error: {study}"), (page, lines)
            refused += 1
    assert refused >= len(pristine) // page_size - 2  # all but unused pages


def test_outdir_link_refused_and_printed_command_is_quoted(tmp_path):
    """Old code: a linked --outdir ended in 'linkout: Not a directory' (rmdir of the link);
    an --outdir with a space was printed unquoted in the serve command to copy."""
    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    base = ["reader-study", "create", "--real", str(real), "--synthetic", str(synth)]
    base += ["--n-real", "2", "--n-synthetic", "2", "--readers", "1", "--outdir"]
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "link")])
    assert result.exit_code == 1
    assert (
        result.output == f"Error: --outdir {tmp_path / 'link'}: a link; give a real folder path\n"
    )
    assert not any((tmp_path / "target").iterdir())
    spaced = tmp_path / "my study"
    result = CliRunner().invoke(cli, [*base, str(spaced)])
    assert result.exit_code == 0, result.output
    assert f"mrisynth reader-study serve '{spaced}'`" in result.output


def test_serve_refuses_a_study_with_a_missing_image(tmp_path):
    """Old code served it: the reader saw a broken image and could answer it anyway."""
    study, _ = make_study(tmp_path, n_real=2, n_synthetic=2, readers=1)
    victim = sorted((study / "images").iterdir())[0]
    victim.unlink()
    result = CliRunner().invoke(cli, ["reader-study", "serve", str(study), "--port", "0"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {study}: 1 of 4 images missing, linked or changed since create (e.g. "
        f"images/{victim.name}); restore the study folder from a copy, or create a new study\n"
    )


def test_head_does_not_restart_the_answer_clock(tmp_path):
    study, links = make_study(tmp_path, n_real=2, n_synthetic=2, readers=1)
    client, link = create_app(study).test_client(), links.readers["reader1"]

    def shown_at() -> float | None:
        con = sqlite3.connect(study / "study.sqlite")
        value = con.execute("SELECT shown_at FROM items WHERE position = 0").fetchone()[0]
        con.close()
        return value

    assert client.head(link).status_code == 200 and shown_at() is None
    client.get(link)
    first = shown_at()
    assert first is not None
    client.head(link)
    assert shown_at() == first


@pytest.mark.timeout(60)
def test_a_fifo_manifest_in_synthetic_does_not_hang_create(tmp_path):
    import os

    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    os.mkfifo(synth / "manifest.csv")  # a plain open() would wait for a writer forever
    args = ["reader-study", "create", "--real", str(real), "--synthetic", str(synth)]
    args += ["--n-real", "2", "--n-synthetic", "2", "--readers", "1"]
    result = CliRunner().invoke(cli, [*args, "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: --synthetic ") and "not a regular file" in result.output
    assert not (tmp_path / "out").exists()
