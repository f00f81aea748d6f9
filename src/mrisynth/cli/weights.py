"""`mrisynth weights`: where NVIDIA's metric detectors are, and fetching them with checksums."""

from __future__ import annotations

import click

from mrisynth.cli.params import RegularFile


@click.group("weights")
def command() -> None:
    """Feature-detector files for FID/KID (Inception-v3) and precision/recall (VGG16).

    Search order: --detector-dir or $MRISYNTH_DETECTOR_DIR, then mrisynth's cache
    ($MRISYNTH_CACHE_DIR/detectors, default ~/.cache/mrisynth/detectors), then NVIDIA's dnnlib
    cache (~/.cache/dnnlib/downloads/<md5>_<file>). Offline machines: copy the files into the
    cache folder by hand.
    """


@command.command("status")
@click.option(
    "--detector-dir",
    type=click.Path(file_okay=False),
    help="Folder searched first (as `mrisynth metrics --detector-dir`).",
)
def status(detector_dir: str | None) -> None:
    """Say which detector files are present, where mrisynth looked, and their sha256."""
    from mrisynth.metrics.detectors import detector_status

    for row in detector_status(detector_dir):
        spec = row.spec
        if row.path is None:
            click.echo(f"{spec.name}: MISSING ({spec.filename}, {spec.title})")
            click.echo(f"  fetch: mrisynth weights fetch {spec.name}   (source {spec.url})")
        else:
            click.echo(f"{spec.name}: {row.path}")
            click.echo(f"  sha256 {row.sha256}: {row.verified}")
        click.echo("  searched, in order:")
        for p in row.searched:
            mark = "*" if row.path is not None and p == row.path else "-"
            click.echo(f"    {mark} {p}")


@command.command("fetch")
@click.argument("names", nargs=-1)
@click.option(
    "--url",
    help="Download from this address instead (a mirror or file:// copy); needs a single NAME.",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    help="Folder to download into (default: mrisynth's cache).",
)
@click.option("--force", is_flag=True, help="Download even if the file is already present.")
def fetch(names: tuple[str, ...], url: str | None, dest: str | None, force: bool) -> None:
    """Download NAMES (inception, vgg16; default both) with a progress bar, atomically, and
    record each file's sha256 next to it (later changes of the file are refused). No published
    hash is pinned: confirm the hash with `mrisynth weights trust FILE`."""
    from mrisynth.errors import ConfigError
    from mrisynth.metrics.detectors import DETECTORS, fetch_detector, find_detector, get_spec

    specs = [get_spec(n) for n in (names or tuple(DETECTORS))]
    if url and len(specs) != 1:
        raise ConfigError("--url needs exactly one detector name, e.g. `fetch inception --url ...`")
    for spec in specs:
        present = find_detector(spec, dest)
        if present is not None and not force:
            click.echo(f"{spec.name}: already present at {present} (use --force to re-download)")
            continue
        result = fetch_detector(spec, url=url, dest_dir=dest)
        _probe_or_remove(result.path, spec, url or spec.url)
        click.echo(f"{spec.name}: {result.path} ({result.size} bytes) sha256 {result.sha256}")
        click.echo(
            "  not confirmed yet: compare the sha256 with one you trust, then run "
            f"`mrisynth weights trust {result.path}` (until then metrics say reference_exact "
            "false)"
        )


def _probe_or_remove(path, spec, source: str) -> None:
    """A download that is not the detector (an HTML error page, a wrong mirror file) is removed
    at once, instead of failing every later metric run."""
    from pathlib import Path

    from mrisynth.errors import InputError
    from mrisynth.metrics.extractor import load_detector_file

    try:
        load_detector_file(path, spec.name)
    except InputError as e:
        Path(path).unlink(missing_ok=True)
        raise InputError(
            f"{source}: the downloaded file is not the {spec.title} detector, removed ({e}); "
            "check --url"
        ) from None


@command.command("trust")
@click.argument("file", type=RegularFile())
@click.option(
    "--as",
    "kind",
    type=click.Choice(["inception", "vgg16"]),
    help="Which detector FILE is (default: from its name).",
)
def trust(file: str, kind: str | None) -> None:
    """Confirm FILE's sha256 as a genuine NVIDIA detector, so metrics computed with it are
    recorded as reference-exact. Compare the printed hash with one you trust first (e.g.
    computed where you downloaded the file from NVIDIA). FILE must pass the interface probe."""
    from pathlib import Path

    from mrisynth.errors import ConfigError
    from mrisynth.metrics import detectors
    from mrisynth.metrics.extractor import load_detector_file

    if kind is None:
        name = Path(file).name
        kind = next(
            (s.name for s in detectors.DETECTORS.values() if name.endswith(s.filename)), None
        )
        if kind is None:
            raise ConfigError(f"{file}: cannot tell which detector it is; add --as inception|vgg16")
    load_detector_file(file, kind)  # InputError unless it has the detector's interface
    sha = detectors.trust_file(kind, file)
    click.echo(f"{kind}: {file} sha256 {sha} confirmed (recorded in the cache's trusted.json)")
