"""`mrisynth metrics`: FID/KID/precision-recall (NVIDIA-exact), weight-free metrics and the
memorisation audit for a snapshot, every snapshot of a run, or a folder/ZIP of images made by
any generator (`--images`); `--best` names the best snapshot."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import click

from mrisynth import untrusted
from mrisynth.cli.params import NetworkPath
from mrisynth.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def _data_from_run(network: Path) -> str:
    """The archive a run was trained on, from its training_options.json."""
    from mrisynth.training.run_record import recorded_data

    return recorded_data(network, "--network")


def _format(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6g}"


def _table(rows: list[tuple[str, str, str]]) -> str:
    head = ("snapshot", "result", "value")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.command("metrics")
@click.option(
    "--network",
    metavar="CHECKPOINT_OR_RUN",
    type=NetworkPath(),
    help="A snapshot (.safetensors) or a run folder (every snapshot in it).",
)
@click.option(
    "--images",
    metavar="DIR|ZIP",
    type=click.Path(exists=True, path_type=Path),
    help="Instead of --network: a folder or ZIP of generated PNGs (any generator); needs --data.",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --images: folder for the records (default: <images>-metrics beside them).",
)
@click.option(
    "--data",
    metavar="ARCHIVE",
    type=click.Path(exists=True),
    help="Training archive (folder or ZIP). Default: the run's training data.",
)
@click.option(
    "--metrics",
    "metric_names",
    default="fid50k_full",
    show_default=True,
    help="Comma-separated: fid50k_full, kid50k_full, pr50k3_full (any count, e.g. "
    "fid2k_full), intensity_hist, body_area, pixfd[<n>], frd<n>, memorisation[<n>], "
    "diversity[<n>], faithfulness[<n>] (conditional models).",
)
@click.option(
    "--num-gen",
    type=int,
    default=None,
    help="Generated images for every metric (the names then say so, e.g. fid2k_full).",
)
@click.option(
    "--best",
    metavar="METRIC",
    help="Only name the run's best snapshot for METRIC (a name or a result key, e.g. "
    "pr50k3_full = best precision, fid50k_full = lowest FID).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option(
    "--detector-dir",
    type=click.Path(file_okay=False),
    help="Folder searched first for inception-2015-12-05.pt / vgg16.pt.",
)
@click.option(
    "--batch",
    "batch_size",
    type=int,
    default=32,
    show_default=True,
    help="Generated images per forward pass.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of KID subsets, FRD's real subset and the holdout split.",
)
@click.option(
    "--copy-percentile",
    type=float,
    default=1.0,
    show_default=True,
    help="Memorisation: flag a generated image closer to a training image than this "
    "percentile of real between-patient nearest-neighbour distances.",
)
@click.option(
    "--pr-fp32",
    is_flag=True,
    help="Precision/recall distances in float32 (~5x faster on CPU; not the reference's "
    "float16, so recorded as reference_exact false).",
)
@click.option(
    "--trust-detector",
    "trust_detector",
    multiple=True,
    metavar="SHA256",
    help="Confirm a detector file's sha256 for this evaluation (see `mrisynth weights trust`).",
)
@click.option("--no-cache", is_flag=True, help="Recompute real-image features (no disk cache).")
@click.option("--force", is_flag=True, help="Re-evaluate snapshots already recorded.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    help="Also write the results as JSON to this file ('-' = standard output).",
)
def command(
    network: Path | None,
    images: Path | None,
    out_dir: Path | None,
    data: str | None,
    metric_names: str,
    num_gen: int | None,
    best: str | None,
    device: str,
    detector_dir: str | None,
    batch_size: int,
    seed: int,
    copy_percentile: float,
    pr_fp32: bool,
    trust_detector: tuple[str, ...],
    no_cache: bool,
    force: bool,
    json_out: str | None,
) -> None:
    """Evaluate a snapshot, every snapshot of a run (appending to metric-<name>.jsonl and
    skipping snapshots already recorded), or a folder/ZIP of generated images, and print the
    results as a table.

    fid/kid/pr need NVIDIA's detector files (see `mrisynth weights status`); intensity_hist,
    body_area, pixfd, frd<n>, memorisation and diversity work without downloaded weights.
    """
    from mrisynth.metrics import records

    if (network is None) == (images is None):
        raise ConfigError("give either --network (a snapshot or run) or --images (DIR or ZIP)")
    if best is None and not any(n.strip() for n in metric_names.split(",")):
        raise ConfigError(f"--metrics {metric_names!r}: no metric name given (e.g. fid50k_full)")
    if json_out not in (None, "-"):
        _check_json_target(Path(json_out))
    if out_dir is not None and images is None:
        raise ConfigError("-o/--out is for --images; a run's records go into the run folder")
    if best is not None:
        if network is None:
            raise ConfigError("--best needs --network with a run folder")
        if not network.is_dir():
            raise ConfigError(f"--best needs a run folder, got the file {network}")
        from mrisynth.training.checkpoint import snapshot_nimg

        b = records.best_snapshot(network, best)
        way = "highest" if b.higher_is_better else "lowest"
        nimg = snapshot_nimg(b.snapshot)  # the name keeps sub-kimg: 0.112, not 0
        kimg = f"{nimg / 1000:g}" if nimg is not None else b.kimg
        click.echo(f"{b.snapshot}\tkimg {kimg}\t{b.key} = {_format(b.value)} ({way})")
        return

    from mrisynth.devices import resolve_device
    from mrisynth.metrics.evaluations import evaluate_snapshots
    from mrisynth.metrics.runner import EvalOptions

    if batch_size < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch_size}")
    if not 0 < copy_percentile < 50:
        raise ConfigError(f"--copy-percentile must be in (0, 50), got {copy_percentile}")
    opts = EvalOptions(
        trusted_sha256=tuple(_sha256_arg(s) for s in trust_detector),
        batch_size=batch_size,
        detector_dir=detector_dir,
        seed=seed,
        use_cache=not no_cache,
        pr_fp16=not pr_fp32,
        copy_percentile=copy_percentile,
    )
    if images is not None:
        if data is None:
            raise ConfigError("--images needs --data (the training archive to compare with)")
        _run_images(images, data, metric_names, out_dir, device, num_gen, opts, force, json_out)
        return
    _check_has_snapshots(network)  # before asking for the data it would evaluate them on
    data = data or _data_from_run(network)
    from mrisynth.metrics import verdict_summary

    with verdict_summary.gathered():  # one warning for many snapshots, not one each
        done = evaluate_snapshots(
            network, data, metric_names, resolve_device(device), num_gen, opts, force=force
        )
    folder = network if network.is_dir() else network.parent
    for line in verdict_summary.summary_lines(_verdicts(done, folder)):
        log.warning("%s", line)
    payload = [_full_result(folder, snap, results) for snap, results in done]
    if json_out == "-":  # machine-readable only
        click.echo(json.dumps(payload, indent=2))
        return
    if not done:
        click.echo("Nothing to do: every snapshot already has these metrics (use --force).")
    _print_results(done, folder)
    if json_out:
        _write_json(json_out, payload)


def _check_has_snapshots(network: Path) -> None:
    from mrisynth.training.checkpoint import list_snapshots

    if network.is_dir() and not list_snapshots(network):
        raise InputError(
            f"--network {network}: no snapshots in {network} (no network-snapshot-*.safetensors)"
            "; train first (`mrisynth train`), or give the run folder that holds them"
        )


def _verdicts(done: list[tuple[str, dict]], folder: Path) -> list[tuple[str, str, object]]:
    """(snapshot, metric, verdicts as recorded) of what was just evaluated."""
    return [
        (snap, name, (_last_record(folder, name, snap) or {}).get("verdicts"))
        for snap, results in done
        for name in results
    ]


def _sha256_arg(value: str) -> str:
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ConfigError(f"--trust-detector {value!r}: not a sha256 (64 hex digits)")
    return v


def _check_json_target(path: Path) -> None:
    """Checked before the evaluation, not after it: an unusable --json would waste it."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"--json {path}: exists and is not a file; choose another file name")
    if not path.resolve().parent.is_dir():
        raise ConfigError(f"--json {path}: no folder {path.parent}; create it or choose another")


def _check_out_dir(out_dir: Path) -> None:
    """-o holds evaluations only: never a training run (the images' records would be mixed
    with the run's own per-snapshot records) or a non-empty folder of something else."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if (out_dir / "training_options.json").exists() or any(
        out_dir.glob("network-snapshot-*")
    ):
        raise ConfigError(
            f"-o {out_dir}: a training run folder; its records would mix with the run's. "
            "Choose a folder of its own"
        )
    if not any(out_dir.glob("metric-*.jsonl")) and not any(out_dir.glob("memorisation-*")):
        raise ConfigError(
            f"-o {out_dir}: folder is not empty and is not an earlier evaluation (no "
            "metric-*.jsonl); choose a new folder"
        )


def _run_images(images, data, metric_names, out_dir, device, num_gen, opts, force, json_out):
    from mrisynth.devices import resolve_device
    from mrisynth.metrics.evaluations import evaluate_images

    inputs = [Path(images).resolve(), Path(data).resolve()]
    if out_dir is not None and not any(out_dir.resolve().is_relative_to(p) for p in inputs):
        _check_out_dir(out_dir)  # (-o inside an input: evaluate_images says so)

    ev = evaluate_images(
        images, data, metric_names, out_dir, resolve_device(device), num_gen, opts, force
    )
    payload = _full_result(ev.out_dir, ev.snapshot, ev.results)
    payload["out_dir"] = str(ev.out_dir)
    payload["skipped_already_recorded"] = ev.skipped
    if json_out == "-":
        click.echo(json.dumps(payload, indent=2))
        return
    if ev.skipped:
        click.echo(f"Already recorded for these images (use --force): {', '.join(ev.skipped)}")
    _print_results([(ev.snapshot, ev.results)], ev.out_dir)
    where = "" if out_dir is not None else " (default: beside the images; -o to choose)"
    click.echo(f"records in {ev.out_dir}{where}; `mrisynth report {ev.out_dir}` renders them")
    if json_out:
        _write_json(json_out, payload)


def _full_result(folder: Path, snapshot: str, results: dict) -> dict:
    """Results plus each metric's record line (reference_exact, caveats, verdicts, ...) and
    the memorisation summary with its per-image records, as written to `folder`."""
    from mrisynth.metrics.memorisation import audit_stem

    lines = {name: _last_record(folder, name, snapshot) for name in results}
    out = {"snapshot": snapshot, "results": results, "records": lines}
    audit = folder / f"{audit_stem(snapshot)}.json"
    if any(n.startswith("memorisation") for n in results) and audit.is_file():
        try:
            out["memorisation"] = untrusted.loads(
                audit.read_text(encoding="utf-8"), str(audit), allow_nan=True
            )
        except (OSError, ValueError, untrusted.BadValue) as e:
            raise InputError(f"{audit}: unreadable ({e})") from None
    return out


def _print_results(done: list[tuple[str, dict]], folder: Path) -> None:
    from mrisynth.metrics.memorisation import audit_stem

    rows = [
        (snap, key, _format(value))
        for snap, results in done
        for per_metric in results.values()
        for key, value in per_metric.items()
    ]
    if rows:
        click.echo(_table(rows))
    from mrisynth.metrics.verdict_summary import caveat_lines

    caveats = [  # (warning verdicts: said once by the caller)
        (snap, name, (_last_record(folder, name, snap) or {}).get("caveats"))
        for snap, results in done
        for name in results
    ]
    for line in caveat_lines(caveats):  # the same caveat for 3 snapshots: one line
        click.echo(line)
    for snap, results in done:
        if any(name.startswith("memorisation") for name in results):
            stem = folder / audit_stem(snap)
            click.echo(f"memorisation audit of {snap}: {stem}.json, {stem}.png")


def _last_record(folder: Path, name: str, snapshot: str) -> dict | None:
    from mrisynth.metrics import records

    mine = [
        r
        for r in records.read_records(records.metric_file(folder, name))
        if r["snapshot"] == snapshot
    ]
    return mine[-1] if mine else None


def _write_json(path: str, payload) -> None:
    from mrisynth import atomic

    atomic.write_text(path, json.dumps(payload, indent=2) + "\n")
