"""`reader-study create` and the web app through Flask's test client: encoding, tokens, CSRF,
hostile form values, no truth in anything a reader gets, pause and resume."""

from __future__ import annotations

import re
import sqlite3
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mrisynth.data.png import decode_png
from mrisynth.errors import MrisynthError
from mrisynth.readerstudy.app import MAX_COMMENT, create_app
from mrisynth.readerstudy.create import StudyPlan, create_study
from mrisynth.readerstudy.sources import balanced_indices, encode
from mrisynth.readerstudy.store import DB_NAME
from readerstudy_data import make_study, write_real, write_synthetic


@pytest.fixture
def study(tmp_path):
    folder, links = make_study(tmp_path, n_real=4, n_synthetic=4, readers=2)
    return folder, links, create_app(folder).test_client()


def form_of(html: str) -> dict[str, str]:
    return {k: re.search(rf'name="{k}" value="([^"]+)"', html).group(1) for k in ("csrf", "item")}


def answer(client, link: str, label: str = "real", **extra) -> int:
    page = client.get(link).get_data(as_text=True)
    data = {**form_of(page), "label": label, **extra}
    return client.post(f"{link}/answer", data=data).status_code


def db(folder: Path) -> sqlite3.Connection:
    con = sqlite3.connect(folder / DB_NAME)
    con.row_factory = sqlite3.Row
    return con


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i < len(png):
        (n,) = struct.unpack(">I", png[i : i + 4])
        out.append((png[i + 4 : i + 8], png[i + 8 : i + 8 + n]))
        i += 12 + n
    return out


def test_images_are_encoded_identically(study):
    folder, _, _ = study
    con = db(folder)
    rows = con.execute("SELECT file, truth, source, sha256 FROM images").fetchall()
    assert Counter(r["truth"] for r in rows) == {"real": 4, "synthetic": 4}
    headers = set()
    for r in rows:
        blob = (folder / "images" / r["file"]).read_bytes()
        assert re.fullmatch(r"[0-9a-f]{32}\.png", r["file"])  # random, not from the source
        assert [c for c, _ in chunks(blob)] == [b"IHDR", b"IDAT", b"IEND"]  # no metadata
        headers.add(chunks(blob)[0][1])
        assert encode(decode_png(blob)) == blob  # one encoder, one setting (uncompressed)
    assert len(headers) == 1  # same size, bit depth, colour type for real and synthetic
    sources = {r["source"] for r in rows if r["truth"] == "synthetic"}
    assert "grid.png" not in sources and all(s.startswith("seed") for s in sources)


def test_real_images_are_patient_balanced():
    rng = np.random.default_rng(0)
    keys = ["a"] * 10 + ["b"] * 2 + ["c"] * 5
    picked = balanced_indices(keys, 7, rng)
    assert len(set(picked)) == 7
    assert sorted(Counter(keys[i] for i in picked).values()) == [2, 2, 3]
    assert sorted(balanced_indices(keys, 17, rng)) == list(range(17))
    with pytest.raises(MrisynthError, match="only 17"):
        balanced_indices(keys, 18, rng)


def test_each_reader_has_own_order_and_ids(study):
    folder, _, _ = study
    con = db(folder)
    items = con.execute("SELECT reader_id, image_id, opaque FROM items").fetchall()
    ids = [r["opaque"] for r in items]
    assert len(set(ids)) == len(ids) == 16
    for rid in (1, 2):
        assert sorted(r["image_id"] for r in items if r["reader_id"] == rid) == list(range(1, 9))
    tokens = con.execute("SELECT token_hash FROM readers").fetchall()
    text = (folder / "links.txt").read_text()
    assert all(t["token_hash"] not in text for t in tokens)  # the database holds hashes only
    assert (folder / "links.txt").stat().st_mode & 0o077 == 0


def test_wrong_tokens_and_ids_are_refused(study):
    _folder, links, client = study
    r1, r2, org = links.readers["reader1"], links.readers["reader2"], links.organiser
    for path in ("/r/nope", "/r/nope/pause", "/r/" + org[3:], "/o/" + r1[3:], "/r/" + "x" * 5000):
        assert client.get(path).status_code == 404, path
    assert client.get(org).status_code == 200
    item = form_of(client.get(r1).get_data(as_text=True))["item"]
    assert client.get(f"{r1}/image/{item}").status_code == 200
    assert client.get(f"{r2}/image/{item}").status_code == 404  # another reader's id
    for bad in ("..%2Fstudy.sqlite", "%2e%2e", item + "x", ""):
        assert client.get(f"{r1}/image/{bad}").status_code == 404
    assert client.post("/r/nope/answer", data={"label": "real"}).status_code == 404


def test_csrf_and_method(study):
    folder, links, client = study
    r1, r2 = links.readers["reader1"], links.readers["reader2"]
    page = client.get(r1).get_data(as_text=True)
    form = form_of(page)
    assert client.get(f"{r1}/answer").status_code == 405
    for csrf in ("", "forged", form_of(client.get(r2).get_data(as_text=True))["csrf"]):
        data = {"csrf": csrf, "item": form["item"], "label": "real"}
        assert client.post(f"{r1}/answer", data=data).status_code == 403
    assert db(folder).execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"label": "maybe"},
        {"label": ""},
        {"label": "real", "realism": "7"},
        {"label": "real", "realism": "0"},
        {"label": "real", "realism": "nan"},
        {"label": "real", "realism": "2.5"},
        {"label": "real", "realism": "-1"},
        {"label": "real", "comment": "x" * (MAX_COMMENT + 1)},
    ],
)
def test_hostile_form_values_are_refused(study, extra):
    folder, links, client = study
    r1 = links.readers["reader1"]
    data = {**form_of(client.get(r1).get_data(as_text=True)), **extra}
    assert client.post(f"{r1}/answer", data=data).status_code == 400
    assert db(folder).execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


def test_huge_form_is_refused(study):
    _folder, links, client = study
    r1 = links.readers["reader1"]
    data = {**form_of(client.get(r1).get_data(as_text=True)), "label": "real"}
    data["comment"] = "y" * 200_000
    assert client.post(f"{r1}/answer", data=data).status_code == 413


def test_answers_are_final_and_in_order(study):
    folder, links, client = study
    r1, r2 = links.readers["reader1"], links.readers["reader2"]
    first = form_of(client.get(r1).get_data(as_text=True))
    ok = {**first, "label": "synthetic", "realism": "2", "comment": "a\x00b <script>"}
    assert client.post(f"{r1}/answer", data=ok).status_code == 303
    # the same form again (back button), and reader2's item with reader1's csrf: not saved
    again = {**first, "label": "real"}
    assert client.post(f"{r1}/answer", data=again).status_code == 303
    other = {**first, "item": form_of(client.get(r2).get_data(as_text=True))["item"]}
    assert client.post(f"{r1}/answer", data={**other, "label": "real"}).status_code == 303
    rows = db(folder).execute("SELECT * FROM answers").fetchall()
    assert len(rows) == 1
    assert (rows[0]["label"], rows[0]["realism"], rows[0]["comment"]) == (
        "synthetic",
        2,
        "ab <script>",
    )
    assert rows[0]["seconds"] is not None and rows[0]["seconds"] >= 0


def test_no_truth_in_anything_a_reader_gets(study):
    """Every page of a whole study is the same text once the per-item values are blanked,
    and no response carries a file name, source, patient key or hash."""
    folder, links, client = study
    con = db(folder)
    secrets = [v for r in con.execute("SELECT file, source, patient_key, sha256 FROM images")
               for v in r if v]  # fmt: skip
    link = links.readers["reader1"]
    pages, responses = set(), []
    for k in range(8):
        resp = client.get(link)
        html = resp.get_data(as_text=True)
        item = form_of(html)["item"]
        img = client.get(f"{link}/image/{item}")
        responses += [resp, img]
        blanked = html.replace(item, "ITEM").replace(f'Image <b id="number">{k + 1}</b>', "N")
        pages.add(re.sub(r"image \d+|Image \d+ of", "N", blanked))
        post = client.post(f"{link}/answer", data={**form_of(html), "label": "real"})
        responses.append(post)
    responses += [client.get(link), client.get(f"{link}/pause")]
    assert len(pages) == 1
    for resp in responses:
        text = resp.get_data().decode("latin-1") + str(resp.headers)
        assert not [s for s in secrets if s in text]
        assert "truth" not in text.lower()
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Thank you" in client.get(link).get_data(as_text=True)


def test_pause_and_resume(study):
    folder, links, client = study
    r1 = links.readers["reader1"]
    assert answer(client, r1) == 303
    assert answer(client, r1, "synthetic") == 303
    pause = client.get(f"{r1}/pause").get_data(as_text=True)
    assert "2 of 8" in pause
    fresh = create_app(folder).test_client()  # a new server process would see the same
    assert 'id="number">3<' in fresh.get(r1).get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n_real": 0}, "--n-real"),
        ({"n_real": 10**9}, "--n-real"),
        ({"readers": 0}, "--readers"),
        ({"seed": -1}, "--seed"),
        ({"n_real": 25}, "holds 24 images"),
        ({"n_synthetic": 25}, "holds 24 PNG images"),
    ],
)
def test_create_refuses_bad_plans(tmp_path, change, match):
    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    plan = {"real": real, "synthetic": synth, "n_real": 2, "n_synthetic": 2, "readers": 1}
    with pytest.raises(MrisynthError, match=match):
        create_study(StudyPlan(**{**plan, **change}), tmp_path / "study")
    assert not (tmp_path / "study").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "synth"]


def test_create_refuses_mismatched_shapes_and_unsafe_outdirs(tmp_path):
    real = write_real(tmp_path / "real", size=16)
    synth = write_synthetic(tmp_path / "synth", size=32)
    with pytest.raises(MrisynthError, match="differ in shape"):
        create_study(StudyPlan(real, synth, 2, 2, 1), tmp_path / "study")
    small = write_synthetic(tmp_path / "small", size=16)
    for out in (real / "study", tmp_path):
        with pytest.raises(MrisynthError, match="--outdir"):
            create_study(StudyPlan(real, small, 2, 2, 1), out)
    (small / "generation.partial.json").write_text("{}")
    with pytest.raises(MrisynthError, match="unfinished"):
        create_study(StudyPlan(real, small, 2, 2, 1), tmp_path / "s2")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_synthetic_images_generated_from_a_snapshot(tmp_path):
    """--synthetic RUN generates the images with the library's sampler; seeds are drawn from
    --seed, so the same plan gives the same pixels, and they are encoded like the real ones."""
    from tests.metric_runs import runner_setup

    from mrisynth.generate.sampling import SamplingOptions, sample_images

    _, archive, run, G = runner_setup(tmp_path)
    studies = []
    for name in ("s1", "s2"):
        create_study(StudyPlan(archive, run, 2, 3, 1, seed=5, device="cpu"), tmp_path / name)
        con = db(tmp_path / name)
        rows = con.execute("SELECT file, source FROM images WHERE truth = 'synthetic'").fetchall()
        studies.append({r["source"]: (tmp_path / name / "images" / r["file"]).read_bytes()
                        for r in rows})  # fmt: skip
    assert studies[0] == studies[1] and len(studies[0]) == 3
    seeds = sorted(int(s.removeprefix("seed")) for s in studies[0])
    for seed, img in sample_images(G, seeds, SamplingOptions(), "cpu"):
        assert decode_png(studies[0][f"seed{seed}"]).tolist() == img.tolist()


def test_altered_databases_are_refused_or_cleaned(tmp_path):
    """A study folder is an input too: a changed schema is refused; a database path to an
    image is never followed; odd values a hand edit can slip past the CHECKs are dropped."""
    from mrisynth.readerstudy.analysis import analyse
    from mrisynth.readerstudy.store import open_study

    folder, links = make_study(tmp_path, n_real=1, n_synthetic=1, readers=1)
    client = create_app(folder).test_client()
    r1 = links.readers["reader1"]
    assert answer(client, r1, realism="3") == 303
    con = db(folder)
    con.execute("UPDATE answers SET realism = 2.5, seconds = 1e999")
    con.execute(  # both exist: only the name check keeps them from being served
        "UPDATE images SET file = CASE id WHEN 1 THEN '../study.sqlite' ELSE '../links.txt' END"
    )
    con.commit()
    item = form_of(client.get(r1).get_data(as_text=True))["item"]
    assert client.get(f"{r1}/image/{item}").status_code == 404
    ro = open_study(folder, readonly=True)
    (row,) = analyse(ro)["answers"]
    assert row["realism"] is None and row["seconds"] is None
    ro.close()
    con.execute("ALTER TABLE answers ADD COLUMN extra TEXT")
    con.commit()
    with pytest.raises(MrisynthError, match="not a reader-study database"):
        open_study(folder)
    with pytest.raises(MrisynthError, match="not a reader-study database"):
        create_app(folder)


def test_a_killed_create_leaves_nothing_behind_the_next_one(tmp_path):
    """The build folder of a killed create is removed by the next create; a look-alike folder
    holding anything else is left alone."""
    real, synth = write_real(tmp_path / "real"), write_synthetic(tmp_path / "synth")
    killed = tmp_path / ".study.abc123.tmp"
    (killed / "images").mkdir(parents=True)
    (killed / "images" / ("0" * 32 + ".png")).write_bytes(b"partial")
    (killed / DB_NAME).write_bytes(b"partial")
    foreign = tmp_path / ".study.keep.tmp"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    create_study(StudyPlan(real, synth, 2, 2, 1), tmp_path / "study")
    assert not killed.exists()
    assert (foreign / "notes.txt").read_text() == "mine"
    assert (tmp_path / "study" / DB_NAME).is_file()
