"""The reader-study web app (Flask + Jinja, no JS framework).

Routes (TOKEN is the reader's or organiser's secret; OPAQUE is one of that reader's image ids):
  GET  /r/TOKEN                the current image, or 'done'     (records when it was shown)
  GET  /r/TOKEN/image/OPAQUE   the PNG (this reader's ids only)
  POST /r/TOKEN/answer         real|synthetic, realism 1-5 (optional), comment; CSRF token
  GET  /r/TOKEN/pause          'your answers are saved'
  GET  /o/TOKEN                the organiser's progress table (counts only)
Nothing a reader gets names the truth or the source; unknown tokens and ids are a plain 404.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from mrisynth.errors import InputError
from mrisynth.readerstudy import store
from mrisynth.readerstudy.create import IMAGE_NAME, IMAGES_DIR
from mrisynth.readerstudy.serving import install_log_redaction

MAX_COMMENT = 2000  # characters
MAX_FORM_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a 4096x4096 RGB PNG stored raw is 48 MiB

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; script-src 'self'; "
    "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it elsewhere
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def create_app(study: str | Path) -> Flask:
    """The app serving one study folder (opened and checked now, not at the first request)."""
    study = Path(study)
    check_images(study)
    install_log_redaction()  # every URL holds a secret token
    app = Flask(__name__)
    app.config["STUDY"] = study
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        con = g.pop("con", None)
        if con is not None:
            con.close()

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers.update(HEADERS)
        return response

    _routes(app)
    return app


def check_images(study: Path) -> None:
    """Open the study and read every image as a reader would get it: a missing, linked or
    changed file would reach readers as a broken image they might answer anyway."""
    con = store.open_study(study)
    try:
        rows = con.execute("SELECT file, sha256 FROM images ORDER BY id").fetchall()
    finally:
        con.close()
    bad = [
        r["file"]
        for r in rows
        if not IMAGE_NAME.fullmatch(r["file"])
        or read_study_image(study / IMAGES_DIR / r["file"], r["sha256"]) is None
    ]
    if bad:
        raise InputError(
            f"{study}: {len(bad)} of {len(rows)} images missing, linked or changed since "
            f"create (e.g. {IMAGES_DIR}/{ascii(bad[0])[1:-1]}); restore the study folder from "
            "a copy, or create a new study"
        )


def _study() -> Path:
    return current_app.config["STUDY"]


def _db() -> sqlite3.Connection:
    """One connection per request (closed at teardown): SQLite handles the concurrency."""
    if "con" not in g:
        g.con = store.connect(_study() / store.DB_NAME)
    return g.con


def _reader(token: str, role: str = "reader") -> store.Reader:
    reader = store.find_reader(_db(), token, role)
    if reader is None:
        abort(404)
    return reader


def _routes(app: Flask) -> None:
    app.add_url_rule("/r/<token>", "read", _read, methods=["GET"])
    app.add_url_rule("/r/<token>/image/<opaque>", "image", _image, methods=["GET"])
    app.add_url_rule("/r/<token>/answer", "answer", _answer, methods=["POST"])
    app.add_url_rule("/r/<token>/pause", "pause", _pause, methods=["GET"])
    app.add_url_rule("/o/<token>", "organiser", _organiser, methods=["GET"])
    app.add_url_rule("/", "index", lambda: (render_template("index.html"), 200))
    app.add_url_rule("/favicon.ico", "favicon", lambda: ("", 204))  # browsers ask for it


def _read(token: str) -> Any:
    reader = _reader(token)
    con = _db()
    item = store.current_item(con, reader.id)
    if item is None:
        return render_template("done.html", total=store.count_items(con, reader.id))
    if request.method == "GET":  # a HEAD (a link checker) shows nobody the image
        store.mark_shown(con, reader.id, item.position)
    return render_template(
        "reader.html",
        token=token,
        item=item,
        number=item.position + 1,
        csrf=reader.csrf,
        image_url=url_for("image", token=token, opaque=item.opaque),
    )


def _image(token: str, opaque: str) -> Any:
    reader = _reader(token)
    found = store.image_file(_db(), reader.id, opaque)
    if found is None or not IMAGE_NAME.fullmatch(found[0]):  # never a path from the database
        abort(404)
    blob = read_study_image(_study() / IMAGES_DIR / found[0], found[1])
    if blob is None:
        abort(404)
    # The bytes alone: no Last-Modified or ETag (a file date would tell when, so in which
    # order, create wrote it), hence no 304 or range replies either.
    return Response(blob, mimetype="image/png")


def read_study_image(path: Path, sha256: str) -> bytes | None:
    """The PNG create stored at `path`, or None: a link, FIFO or other non-regular file, one
    larger than any study image, or bytes that differ from the recorded hash (a hand-edited
    folder) are never sent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
            return None
        blob = f.read(MAX_IMAGE_BYTES + 1)
    ok = len(blob) <= MAX_IMAGE_BYTES and hashlib.sha256(blob).hexdigest() == sha256
    return blob if ok else None


def _answer(token: str) -> Any:
    reader = _reader(token)
    form = request.form
    if not hmac.compare_digest(form.get("csrf", ""), reader.csrf):
        abort(403)
    answer = parse_answer(form.get("label"), form.get("realism"), form.get("comment"))
    if answer is None:
        abort(400)
    label, realism, comment = answer
    store.save_answer(_db(), reader.id, form.get("item", ""), label, realism, comment)
    # A stale or repeated form (back button, double click) lands on the current item.
    return redirect(url_for("read", token=token), code=303)


def parse_answer(
    label: str | None, realism: str | None, comment: str | None
) -> tuple[str, int | None, str] | None:
    """The form's values checked, or None: label one of LABELS, realism '' or 1..5."""
    if label not in store.LABELS:
        return None
    score = None
    if realism:
        if realism not in {"1", "2", "3", "4", "5"}:
            return None
        score = int(realism)
    text = store.clean_comment(comment or "")
    if len(text) > MAX_COMMENT:
        return None
    return label, score, text


def _pause(token: str) -> Any:
    reader = _reader(token)
    con = _db()
    return render_template(
        "paused.html",
        token=token,
        answered=store.count_answers(con, reader.id),
        total=store.count_items(con, reader.id),
    )


def _organiser(token: str) -> Any:
    _reader(token, role="organiser")
    return render_template("organiser.html", rows=store.progress(_db()))
