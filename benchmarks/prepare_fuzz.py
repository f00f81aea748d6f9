"""Attack `mrisynth prepare` with the hostile DICOM files of tests/test_prepare_fuzz.py, at scale.

For each seed: a phantom tree (good/) and COUNT mutants plus the bombs (bad/); one capped
`prepare good bad` process (RLIMIT_AS, with a timeout so a hang is counted) and a reference
`prepare good`. Then each bomb alone, for its own peak memory. Prints the totals in the issue's
form: inputs tried / clean errors or skips / tracebacks / hangs / data lost, and peak RSS.

    .venv/bin/python benchmarks/prepare_fuzz.py --count 1000 --seeds 3 [--workers 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_prepare_fuzz import MEMORY_CAP, SECRET, account, run_capped, write_attack

BOMBS = (
    "rle-40000",
    "rle-8192x2048",
    "j2k-40000",
    "native-4096",
    "native-4096x16",
    "pixel-length-4G",
    "deflate-bomb",
    "header-9MiB",
    "rle-4096-valid",
)


def one_seed(tmp: Path, count: int, seed: int, workers: int, cap: int) -> dict:
    good, bad, n_bad = write_attack(tmp / "in", count, seed)
    key = tmp / "key"
    key.write_text(SECRET)
    common = ["--size", "16", "--no-progress", "--keep-source-paths", "--patient-key-secret"]
    common += [str(key), "--workers", str(workers)]
    subprocess.run(
        [sys.executable, "-m", "mrisynth", "prepare", str(good), "-o", str(tmp / "ref"), *common],
        check=True,
        capture_output=True,
    )
    run = run_capped(["prepare", str(good), str(bad), "-o", str(tmp / "out"), *common], cap)
    ref = {p.name: p.read_bytes() for p in (tmp / "ref").glob("*.png")}
    got = {p.name: p.read_bytes() for p in (tmp / "out").glob("*.png")}
    acc = account(good, bad, tmp / "out") if (tmp / "out" / "report.json").is_file() else None
    bad_names = {p.name for p in bad.iterdir()}
    return {
        "tried": n_bad,
        "skipped": sum(1 for f in (acc or {}).get("skipped", {}) if f in bad_names),
        "used": sum(1 for f in (acc or {}).get("used", []) if f in bad_names),
        "decoder_panics": sum(
            1 for r in (acc or {}).get("skipped", {}).values() if r.startswith("decoder crashed")
        ),
        "traceback": int("Traceback" in run["output"] or run["code"] != 0),
        "hang": int(run["hang"]),
        "lost": len(acc["lost"]) if acc else n_bad,
        "good_missing": sum(1 for k, v in ref.items() if got.get(k) != v),
        "peak_mb": run["peak_mb"],
        "seconds": run["seconds"],
    }


def bombs_alone(tmp: Path, cap: int) -> dict[str, float]:
    """Peak RSS of prepare given one bomb beside the phantom (the worst one is reported)."""
    good, bad, _ = write_attack(tmp / "in", 0, 1, heavy=True)
    peaks = {}
    for name in BOMBS:
        one = tmp / name
        one.mkdir()
        (one / f"{name}.dcm").write_bytes((bad / f"{name}.dcm").read_bytes())
        run = run_capped(
            [
                "prepare",
                str(good),
                str(one),
                "-o",
                str(tmp / f"out-{name}"),
                "--size",
                "16",
                "--no-progress",
            ],
            cap,
        )
        peaks[name] = run["peak_mb"]
        print(f"  {name:16s} exit {run['code']}  peak {run['peak_mb']:.0f} MiB")
    return peaks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="mutants per seed (plus 7 bombs)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cap-gb", type=float, default=MEMORY_CAP / 2**30)
    args = ap.parse_args()
    cap = int(args.cap_gb * 2**30)
    totals: dict[str, float] = {}
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            r = one_seed(Path(tmp), args.count, 1000 + seed, args.workers, cap)
        print(
            f"seed {1000 + seed}: "
            + ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
            )
        )
        for k, v in r.items():
            totals[k] = max(totals.get(k, 0), v) if k == "peak_mb" else totals.get(k, 0) + v
    print(f"bombs alone (RLIMIT_AS {args.cap_gb:.1f} GiB):")
    with tempfile.TemporaryDirectory() as tmp:
        peaks = bombs_alone(Path(tmp), cap)
    worst = max(peaks, key=peaks.get)
    clean = totals["skipped"] + totals["used"]
    print(
        f"inputs tried {totals['tried']:.0f} / clean errors or skips {totals['skipped']:.0f} "
        f"(+ {totals['used']:.0f} still usable, used) / tracebacks {totals['traceback']:.0f} / "
        f"hangs {totals['hang']:.0f} / data lost {totals['lost'] + totals['good_missing']:.0f} "
        f"(accounted for: {clean:.0f}; decoder panics caught: {totals['decoder_panics']:.0f})"
    )
    print(
        f"peak RSS: whole attack {totals['peak_mb']:.0f} MiB; worst bomb alone {worst} "
        f"{peaks[worst]:.0f} MiB; total {totals['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
