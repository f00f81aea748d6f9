"""Hostile review of the reader study: truth leaks through file dates, storage order and the
public --seed; paired (image + mask) inputs; hand-edited image files; tokens in the server
log; the statistics of unbalanced designs against an independent computation."""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from mrisynth.data.png import decode_png, encode_grey_alpha
from mrisynth.errors import MrisynthError
from mrisynth.imaging import encode_png
from mrisynth.readerstudy import stats
from mrisynth.readerstudy.analysis import analyse, reader_row
from mrisynth.readerstudy.app import create_app
from mrisynth.readerstudy.create import StudyPlan, create_study
from mrisynth.readerstudy.store import DB_NAME, open_study
from readerstudy_data import make_study, write_real, write_synthetic

ITEM = re.compile(r'name="item" value="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def db(folder: Path) -> sqlite3.Connection:
    con = sqlite3.connect(folder / DB_NAME)
    con.row_factory = sqlite3.Row
    return con


def image_urls(client, link: str, n: int) -> list[str]:
    """Answer through the whole study, collecting the URL of every image shown."""
    urls = []
    for _ in range(n):
        page = client.get(link).get_data(as_text=True)
        item = ITEM.search(page).group(1)
        urls.append(f"{link}/image/{item}")
        data = {"csrf": CSRF.search(page).group(1), "item": item, "label": "real"}
        assert client.post(f"{link}/answer", data=data).status_code == 303
    return urls


def test_image_responses_carry_no_file_dates(tmp_path):
    """Last-Modified was the file's mtime, and create wrote the real images first: a reader
    could sort images by it. No date, no ETag, no 304, and the same headers for every image."""
    folder, links = make_study(tmp_path, n_real=3, n_synthetic=3, readers=1)
    con = db(folder)
    for i, r in enumerate(con.execute("SELECT file, truth FROM images")):  # dates by truth
        t = 1_000_000_000 + (0 if r["truth"] == "real" else 10**6) + i
        os.utime(folder / "images" / r["file"], (t, t))
    client = create_app(folder).test_client()
    link = links.readers["reader1"]
    headers = set()
    for url in image_urls(client, link, 6):
        resp = client.get(url, headers={"If-Modified-Since": "Sun, 01 Jan 2090 00:00:00 GMT"})
        assert resp.status_code == 200 and resp.data.startswith(b"\x89PNG")
        assert "Last-Modified" not in resp.headers and "ETag" not in resp.headers
        varying = {"Content-Length", "Date", "Expires"}
        headers.add(tuple(sorted((k, v) for k, v in resp.headers if k not in varying)))
    assert len(headers) == 1, headers


def _orders(folder: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    con = db(folder)
    stored = [r[0] for r in con.execute("SELECT truth FROM images ORDER BY id")]
    q = (
        "SELECT im.truth FROM items i JOIN images im ON im.id = i.image_id "
        "WHERE i.reader_id = ? ORDER BY i.position"
    )
    readers = [tuple(r[0] for r in con.execute(q, (rid,))) for rid in (1, 2, 3)]
    return stored, readers


def test_orders_are_not_reproducible_from_the_public_seed(tmp_path):
    """--seed (default 0, code public) reproduces which images are drawn, but a reader who
    knows it must not be able to recompute their order, nor the order the images are stored
    (and dated) in: those come from a secret seed kept in the database."""
    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    plan = StudyPlan(real, synth, 6, 6, 3, seed=0, device="cpu")
    create_study(plan, tmp_path / "a")
    create_study(plan, tmp_path / "b")
    sources = [
        sorted(r[0] for r in db(tmp_path / s).execute("SELECT source FROM images")) for s in "ab"
    ]
    assert sources[0] == sources[1]  # the sample is reproducible
    (stored_a, readers_a), (stored_b, readers_b) = _orders(tmp_path / "a"), _orders(tmp_path / "b")
    assert readers_a != readers_b  # chance of equality: 924^-3
    by_truth = sorted(stored_a)  # 'real' first, as the sources are read
    assert stored_a != by_truth or stored_b != by_truth  # chance: 924^-2


def test_hand_edited_image_files_are_not_served(tmp_path):
    """images/ of a study folder is input too: a link (to anything on the server), a FIFO, or
    a file whose bytes differ from what create stored is a 404, never sent (edited while
    served); serve refuses to start on such a folder."""
    folder, links = make_study(tmp_path, n_real=2, n_synthetic=2, readers=1)
    client = create_app(folder).test_client()
    secret = tmp_path / "secret.txt"
    secret.write_text("server secret")
    files = [r[0] for r in db(folder).execute("SELECT file FROM images ORDER BY id")]
    (folder / "images" / files[0]).unlink()
    (folder / "images" / files[0]).symlink_to(secret)
    blob = (folder / "images" / files[1]).read_bytes()
    (folder / "images" / files[1]).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    (folder / "images" / files[2]).unlink()
    os.mkfifo(folder / "images" / files[2])  # would block a plain open()
    with pytest.raises(MrisynthError, match=r"3 of 4 images missing, linked or changed"):
        create_app(folder)
    codes = {}
    for url in image_urls(client, links.readers["reader1"], 4):
        resp = client.get(url)
        assert b"server secret" not in resp.data
        codes[resp.status_code] = codes.get(resp.status_code, 0) + 1
    assert codes == {404: 3, 200: 1}


def _paired_real(folder: Path, n: int = 8, size: int = 16) -> Path:
    """A prepared-like folder of grey + alpha PNGs (image, mask), as `dataset --masks`."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(4)
    rows = ["file,patient_key"]
    for i in range(n):
        img = rng.integers(0, 256, (2, size, size), dtype=np.uint8)
        img[1] = np.where(img[1] > 128, 255, 0)  # the mask channel
        (folder / f"img{i:03d}.png").write_bytes(encode_grey_alpha(img))
        rows.append(f"img{i:03d}.png,pt{i % 3}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def _study_images(folder: Path) -> dict[str, np.ndarray]:
    rows = db(folder).execute("SELECT file, source FROM images").fetchall()
    return {r["source"]: decode_png((folder / "images" / r["file"]).read_bytes()) for r in rows}


def test_paired_images_are_shown_without_their_mask(tmp_path):
    """A paired archive's PNG is grey + alpha, the alpha being the organ mask: stored as such,
    create failed on it (or, had it encoded it, the browser would have shown the mask as
    transparency). Readers see channel 0 only, from a
    paired archive and from a paired generator alike (and a generate folder, whose seed PNGs
    are the image alone, now matches a paired archive)."""
    from mrisynth.config import resolve_preset
    from mrisynth.networks import build_generator, network_config_from_preset
    from mrisynth.training.checkpoint import save_snapshot

    real = _paired_real(tmp_path / "real")
    synth = write_synthetic(tmp_path / "synth", size=16)
    create_study(StudyPlan(real, synth, 4, 4, 1, device="cpu"), tmp_path / "s1")
    shown = _study_images(tmp_path / "s1")
    for name, img in shown.items():
        assert img.shape == (1, 16, 16), name
        if name.startswith("img"):
            assert np.array_equal(img[0], decode_png((real / name).read_bytes())[0])
    torch.manual_seed(0)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 2, 0)).eval()
    snap = tmp_path / "run" / "network-snapshot-000000.safetensors"
    save_snapshot(snap, G=G, D=None, G_ema=G, state={"kimg": 0})
    create_study(StudyPlan(real, snap, 2, 2, 1, device="cpu"), tmp_path / "s2")
    assert {img.shape for img in _study_images(tmp_path / "s2").values()} == {(1, 16, 16)}


def test_conditional_snapshot_says_what_to_do(tmp_path):
    """reader-study create has no --class: a conditional snapshot must not ask for one."""
    from mrisynth.config import resolve_preset
    from mrisynth.networks import build_generator, network_config_from_preset
    from mrisynth.training.checkpoint import save_snapshot

    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 3)).eval()
    snap = tmp_path / "network-snapshot-000000.safetensors"
    save_snapshot(snap, G=G, D=None, G_ema=G, state={"kimg": 0})
    real = write_real(tmp_path / "real")
    with pytest.raises(MrisynthError, match=r"conditional.*mrisynth generate") as exc:
        create_study(StudyPlan(real, snap, 2, 2, 1, device="cpu"), tmp_path / "s")
    assert "pass --class" not in str(exc.value)
    assert not (tmp_path / "s").exists()


def test_server_log_never_shows_a_token(caplog):
    """The request log (werkzeug) and Flask's error log name the URL, which is the secret."""
    from mrisynth.readerstudy.serving import redact

    token = "S3cr3t-token_value"
    assert token not in redact(f'"GET /r/{token}/image/abc HTTP/1.1" 200 -')
    assert token not in redact(f"Exception on /o/{token} [GET]")
    assert "/static/reader.js" in redact('"GET /static/reader.js HTTP/1.1" 200 -')
    create_app_logger = logging.getLogger("werkzeug")
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        from mrisynth.readerstudy.serving import install_log_redaction

        install_log_redaction()
        create_app_logger.info('%s - - "%s" %s -', "127.0.0.1", f"GET /r/{token} HTTP/1.1", 200)
    assert caplog.records and token not in caplog.text


def _fisher_by_hand(tp: int, fn: int, tn: int, fp: int) -> float:
    """Two-sided Fisher exact p: sum of hypergeometric tables as or less likely."""
    syn, real, called = tp + fn, tn + fp, tp + fp
    n = syn + real

    def prob(k: int) -> float:
        return math.comb(syn, k) * math.comb(real, called - k) / math.comb(n, called)

    lo, hi = max(0, called - real), min(syn, called)
    p0 = prob(tp)
    return min(1.0, sum(prob(k) for k in range(lo, hi + 1) if prob(k) <= p0 * (1 + 1e-7)))


@pytest.mark.parametrize("counts", [(0, 3, 9, 0), (3, 1, 5, 2), (6, 0, 0, 6), (2, 2, 2, 2)])
def test_independence_test_matches_fisher_by_hand(counts):
    tp, fn, tn, fp = counts
    got = stats.independence_p(stats.Confusion(tp, fn, tn, fp))
    assert got == pytest.approx(_fisher_by_hand(tp, fn, tn, fp), rel=1e-9)


def test_unbalanced_study_does_not_reward_the_majority_answer():
    """9 real + 3 synthetic, a reader who answers 'real' to everything: 75% accuracy beats 0.5,
    yet the answers say nothing about the truth. The test against chance must not call that
    significant; the figure's chance line must be what such a reader gets."""
    answers = [{"truth": "real", "label": "real", "realism": None, "seconds": 1.0}] * 9
    answers += [{"truth": "synthetic", "label": "real", "realism": None, "seconds": 1.0}] * 3
    row = reader_row("r", answers, 12)
    assert row["accuracy"]["value"] == 0.75
    assert row["independence_p"] == 1.0
    assert row["chance"] == 0.75
    assert row["binomial_p"] > 0.5  # against 0.75, not 0.5 (which gives p = 0.146)


def test_negative_times_from_a_hand_edit_are_dropped(tmp_path):
    folder, links = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    client = create_app(folder).test_client()
    image_urls(client, links.readers["reader1"], 2)
    con = db(folder)
    con.execute("UPDATE answers SET seconds = -50")
    con.commit()
    ro = open_study(folder, readonly=True)
    assert all(a["seconds"] is None for a in analyse(ro)["answers"])
    ro.close()


def test_triggers_and_a_linked_analysis_folder_are_refused(tmp_path):
    """A trigger would run hidden SQL on each answer (e.g. rewrite another reader's); an
    analysis/ that links elsewhere would have analyze write outside the study."""
    from mrisynth.readerstudy.analysis import write_analysis

    folder, _ = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "analysis").symlink_to(elsewhere)
    with pytest.raises(MrisynthError, match="analysis"):
        write_analysis(folder)
    assert list(elsewhere.iterdir()) == []
    con = db(folder)
    con.execute(
        "CREATE TRIGGER t AFTER INSERT ON answers BEGIN UPDATE answers SET label = 'real'; END"
    )
    con.commit()
    with pytest.raises(MrisynthError, match="not a reader-study database"):
        create_app(folder)


def test_two_tabs_answering_at_once_save_one_answer(tmp_path):
    """The same item submitted from several tabs at the same moment: one answer counts."""
    import threading

    folder, links = make_study(tmp_path, n_real=2, n_synthetic=2, readers=1)
    app = create_app(folder)
    link = links.readers["reader1"]
    page = app.test_client().get(link).get_data(as_text=True)
    form = {"csrf": CSRF.search(page).group(1), "item": ITEM.search(page).group(1)}
    start, codes = threading.Barrier(6), []

    def tab(label: str) -> None:
        client = app.test_client()
        start.wait()
        codes.append(client.post(f"{link}/answer", data={**form, "label": label}).status_code)

    threads = [threading.Thread(target=tab, args=(lab,)) for lab in ["real", "synthetic"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [303] * 6
    assert db(folder).execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 1


def test_colour_and_grey_images_are_not_mixed(tmp_path):
    """RGB synthetic beside grey real images would give the class away by colour type."""
    real = write_real(tmp_path / "real")
    synth = tmp_path / "rgb"
    synth.mkdir()
    rng = np.random.default_rng(5)
    for seed in range(3):
        img = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
        (synth / f"seed{seed:06d}.png").write_bytes(encode_png(img))
    with pytest.raises(MrisynthError, match=r"real 1x16x16, synthetic 3x16x16"):
        create_study(StudyPlan(real, synth, 2, 2, 1), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def _folders_with_a_tell(tmp_path: Path) -> tuple[Path, Path]:
    """Real images that never reach 0 (as the demo's), synthetic ones that do (clamped)."""
    real, synth = tmp_path / "real", tmp_path / "synth"
    real.mkdir()
    synth.mkdir()
    rng = np.random.default_rng(6)
    rows = ["file,patient_key"]
    for i in range(6):
        img = rng.integers(1, 256, (1, 16, 16), dtype=np.uint8)
        img[0, 0, 0] = 1
        (real / f"r{i}.png").write_bytes(encode_png(img))
        rows.append(f"r{i}.png,p{i % 2}")
        img = rng.integers(0, 256, (1, 16, 16), dtype=np.uint8)
        img[0, 0, 0] = 0
        (synth / f"seed{i:06d}.png").write_bytes(encode_png(img))
    (real / "manifest.csv").write_text("\n".join(rows) + "\n")
    return real, synth


def test_pixel_statistics_that_give_the_class_away_are_reported(tmp_path):
    """Encoding alike is not pixels alike: the demo's real images never go below 1 while the
    generator's reach 0, so window/level narrowed on the darkest values sorts every image.
    create warns, and the analysis (page, JSON, report section) says so."""
    from click.testing import CliRunner

    from mrisynth.cli import cli
    from mrisynth.readerstudy.analysis import write_analysis
    from mrisynth.report.readerstudy import section_entries

    real, synth = _folders_with_a_tell(tmp_path)
    args = ["reader-study", "create", "--real", str(real), "--synthetic", str(synth)]
    args += ["--n-real", "6", "--n-synthetic", "6", "--readers", "1"]
    result = CliRunner().invoke(cli, [*args, "--outdir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "Warning: real and synthetic images differ in simple pixel" in result.output
    assert "  darkest value: real 1, synthetic 0 (AUC 1.00)" in result.output
    page = write_analysis(tmp_path / "s").read_text()
    assert "darkest value: real 1, synthetic 0 (AUC 1.00)" in page
    ro = open_study(tmp_path / "s", readonly=True)
    results = analyse(ro)
    ro.close()
    caption = section_entries(results)[0][2]  # the report section: its first caption
    assert "darkest value: real 1, synthetic 0" in caption
    # images drawn alike: nothing to report
    plain = create_study(
        StudyPlan(write_real(tmp_path / "r2"), write_synthetic(tmp_path / "s2"), 6, 6, 1),
        tmp_path / "s3",
    )
    assert plain.tells == ()
    con = db(tmp_path / "s3")
    con.execute("UPDATE meta SET value = '[{\"feature\": 1}]' WHERE key = 'tells'")
    con.commit()
    ro = open_study(tmp_path / "s3", readonly=True)
    assert analyse(ro)["study"]["tells"] is None  # a broken record is not believed
    ro.close()


def test_bad_host_or_busy_port_is_one_error_line(tmp_path, monkeypatch):
    """werkzeug printed its bare reason ('Name or service not known') and exited; an empty
    --host listened on every interface, announced as 'http://:8000/'."""
    import socket

    from click.testing import CliRunner
    from werkzeug.serving import BaseWSGIServer

    from mrisynth.cli import cli

    monkeypatch.setattr(BaseWSGIServer, "serve_forever", lambda self: None)  # never hang
    folder, _ = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    busy = socket.create_server(("127.0.0.1", 0))
    port = str(busy.getsockname()[1])
    try:
        for host, p in (("", "0"), ("unix:///tmp/x", "0"), ("999.1.1.1", "0"), ("127.0.0.1", port)):
            args = ["reader-study", "serve", str(folder), "--host", host, "--port", p]
            result = CliRunner().invoke(cli, args)
            lines = result.output.strip().splitlines()
            assert result.exit_code == 1 and len(lines) == 1, (host, result.output)
            assert lines[0].startswith("Error: --host"), result.output
    finally:
        busy.close()
    ok = CliRunner().invoke(cli, ["reader-study", "serve", str(folder), "--port", "0"])
    assert ok.exit_code == 0 and "on http://127.0.0.1:" in ok.output, ok.output


def test_drawn_roc_encloses_the_reported_auc():
    """The ROC figure and the AUC number are computed apart: the trapezoid area under the
    drawn points must equal Mann-Whitney U / (n_real n_synthetic), ties included."""
    from mrisynth.report.readerstudy import _roc_points

    rng = np.random.default_rng(7)
    for _ in range(5):
        real, syn = rng.integers(1, 6, 15).tolist(), rng.integers(1, 6, 11).tolist()
        answers = [{"truth": "real", "realism": x} for x in real]
        answers += [{"truth": "synthetic", "realism": x} for x in syn]
        fpr, tpr = _roc_points(answers)
        area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(5))
        assert area == pytest.approx(stats.auc_from_scores(real, syn), abs=1e-12)


def test_mask_pngs_in_a_synthetic_folder_are_not_study_images(tmp_path):
    """A paired generate output copied without its generation.json still names its label
    maps in manifest.csv; they must not be drawn as 'synthetic images'."""
    real = write_real(tmp_path / "real")
    synth = tmp_path / "synth"
    synth.mkdir()
    rng = np.random.default_rng(8)
    rows = ["file,mask_file"]
    for seed in range(4):
        img = rng.integers(0, 256, (1, 16, 16), dtype=np.uint8)
        (synth / f"seed{seed:06d}.png").write_bytes(encode_png(img))
        mask = rng.integers(0, 5, (1, 16, 16), dtype=np.uint8)
        (synth / f"seed{seed:06d}-mask.png").write_bytes(encode_png(mask))
        rows.append(f"seed{seed:06d}.png,seed{seed:06d}-mask.png")
    (synth / "manifest.csv").write_text("\n".join(rows) + "\n")
    create_study(StudyPlan(real, synth, 4, 4, 1), tmp_path / "s")
    sources = {r[0] for r in db(tmp_path / "s").execute("SELECT source FROM images")}
    assert not [s for s in sources if s.endswith("-mask.png")], sources
    with pytest.raises(MrisynthError, match="holds 4 PNG images, 5 requested"):
        create_study(StudyPlan(real, synth, 4, 5, 1), tmp_path / "s2")


def test_a_forged_host_header_reaches_no_page_or_redirect(tmp_path):
    """Nothing is built from Host: redirects are relative, pages carry no absolute URL, so a
    forged Host (or a DNS-rebinding name) cannot steer a reader or poison a link."""
    folder, links = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    client = create_app(folder).test_client()
    link, evil = links.readers["reader1"], {"Host": "evil.example:666"}
    page = client.get(link, headers=evil).get_data(as_text=True)
    data = {"csrf": CSRF.search(page).group(1), "item": ITEM.search(page).group(1)}
    post = client.post(f"{link}/answer", data={**data, "label": "real"}, headers=evil)
    assert post.headers["Location"] == link
    for resp in (client.get(link, headers=evil), client.get(f"{link}/pause", headers=evil)):
        assert "evil" not in resp.get_data(as_text=True) and "http" not in resp.headers.get(
            "Location", ""
        )


def test_comments_are_stored_without_control_or_bidi_characters(tmp_path):
    """A comment is untrusted text that reaches answers.csv (printed in terminals) and the
    analysis page: ANSI escapes and bidi overrides are dropped; lines and tabs are kept."""
    folder, links = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    client = create_app(folder).test_client()
    link = links.readers["reader1"]
    page = client.get(link).get_data(as_text=True)
    data = {"csrf": CSRF.search(page).group(1), "item": ITEM.search(page).group(1)}
    comment = "edge\x1b[2J\x1b]0;pwned\x07 blur\u202etxt.exe\r\nline 2\tok\x00"
    assert client.post(f"{link}/answer", data={**data, "label": "real", "comment": comment})
    (stored,) = db(folder).execute("SELECT comment FROM answers").fetchone()
    assert stored == "edge[2J]0;pwned blurtxt.exe\nline 2\tok"
    con = db(folder)  # a hand edit past the app: the analysis cleans it the same way
    con.execute("UPDATE answers SET comment = 'x\x1b[31my\u2066z'")
    con.commit()
    ro = open_study(folder, readonly=True)
    assert [a["comment"] for a in analyse(ro)["answers"]] == ["x[31myz"]
    ro.close()
