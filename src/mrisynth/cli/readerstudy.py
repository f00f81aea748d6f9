"""`mrisynth reader-study create | serve | analyze`: a visual Turing test in the browser."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import shlex
from pathlib import Path

import click

log = logging.getLogger(__name__)
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


@click.group("reader-study")
def command() -> None:
    """A visual Turing test of real vs synthetic images that readers take in a browser.

    \b
        mrisynth reader-study create --real data/train.zip --synthetic synth \\
            --n-real 20 --n-synthetic 20 --readers 3 --outdir study
        mrisynth reader-study serve study          # http://127.0.0.1:8000/r/TOKEN per reader
        mrisynth reader-study analyze study        # -> study/analysis/index.html, CSV, JSON
    """


@command.command("create")
@click.option(
    "--real",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Real images: a training archive (ZIP) or folder of PNGs with manifest.csv.",
)
@click.option(
    "--synthetic",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Synthetic images: a folder of PNGs (mrisynth generate) or a snapshot/run.",
)
@click.option("--n-real", type=int, default=20, show_default=True, help="Real images shown.")
@click.option(
    "--n-synthetic", type=int, default=20, show_default=True, help="Synthetic images shown."
)
@click.option(
    "--readers",
    type=int,
    default=5,
    show_default=True,
    help="Readers, each with a secret link; all see every image, in their own order.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds which images are drawn (the readers' orders come from a secret seed).",
)
@click.option(
    "--outdir",
    type=click.Path(path_type=Path),
    required=True,
    help="A new or empty folder for the study.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu or cuda (when generating from a snapshot).",
)
def create(
    real: Path,
    synthetic: Path,
    n_real: int,
    n_synthetic: int,
    readers: int,
    seed: int,
    outdir: Path,
    device: str,
) -> None:
    """Sample and encode the images, shuffle per reader, write STUDY with secret links."""
    from mrisynth.readerstudy.create import LINKS_NAME, StudyPlan, create_study

    plan = StudyPlan(real, synthetic, n_real, n_synthetic, readers, seed, device)
    links = create_study(plan, outdir)
    click.echo(f"Study: {outdir} ({n_real} real + {n_synthetic} synthetic, {readers} readers)")
    click.echo(
        f"Secret links (also in {outdir / LINKS_NAME}) once `mrisynth reader-study serve "
        f"{shlex.quote(str(outdir))}` runs; give each reader only their own (with "
        "--host/--port, change the address):"
    )
    for name, path in links.readers.items():
        click.echo(f"  {name}: {DEFAULT_URL}{path}")
    click.echo(f"  organiser: {DEFAULT_URL}{links.organiser}")
    if links.tells:
        click.echo(
            "Warning: real and synthetic images differ in simple pixel statistics; a reader "
            "who narrows window/level or inspects the PNGs can tell them apart by these alone:",
            err=True,
        )
    for tell in links.tells:
        click.echo(f"  {tell}", err=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@command.command("serve")
@click.argument("study", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on; anything but localhost exposes the study.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
def serve(study: Path, host: str, port: int) -> None:
    """Serve STUDY to its readers until stopped (Ctrl-C); answers are saved as given."""
    from werkzeug.serving import make_server

    from mrisynth.readerstudy.app import create_app
    from mrisynth.readerstudy.serving import NeutralHandler, listen

    app = create_app(study)
    sock = listen(host, port)
    if not is_loopback(host):
        click.echo(
            f"Warning: listening on {host}, not only this computer: anyone who can reach it "
            "and holds a link can answer, and links travel unencrypted over plain HTTP (use a "
            "VPN or an HTTPS reverse proxy).",
            err=True,
        )
    server = make_server(
        host, port, app, threaded=True, request_handler=NeutralHandler, fd=sock.fileno()
    )
    sock.close()  # the server holds its own duplicate
    where = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    url = f"http://{where}:{server.port}/"
    click.echo(f"Serving {study} on {url} (Ctrl-C to stop)", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@command.command("analyze")
@click.argument("study", type=click.Path(exists=True, file_okay=False, path_type=Path))
def analyze(study: Path) -> None:
    """Per-reader accuracy, sensitivity, specificity, AUC, kappa: STUDY/analysis/."""
    from mrisynth.readerstudy.analysis import write_analysis

    page = write_analysis(study)
    click.echo(f"Analysis: {page}")
