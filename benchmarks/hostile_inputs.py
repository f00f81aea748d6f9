"""Attack `mrisynth dataset` with every hostile archive of tests/hostile_archives.py and count.

Each input is packed by a fresh `mrisynth dataset IN -o OUT` process (with a timeout, so a hang
is counted, not waited for). Prints one line per input and the totals in the issue's form:
inputs tried / clean errors or accepted / tracebacks / hangs / data lost, and the largest peak
resident memory of the child (VmHWM, else ru_maxrss; MiB) beside a good archive's baseline.
Run: `.venv/bin/python benchmarks/hostile_inputs.py`.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostile_archives import good_png, hostile_cases
from mrisynth.hashing import sha256_file

# Peak memory of the child itself: VmHWM (reset at exec) where Linux has it; ru_maxrss can carry
# the parent's high-water mark over a fork.
_CHILD = """
import resource, sys
from mrisynth.cli import main
def peak_mib():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
try:
    main(sys.argv[1:])
finally:
    print("MAXRSS", peak_mib(), file=sys.stderr)
"""


def _digest(path: Path) -> list[tuple[str, str]]:
    """Streamed, so this process stays small (a child's ru_maxrss starts from its parent's)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p), sha256_file(p)) for p in files]


def attack(name: str, source: Path, out: Path, timeout: float) -> tuple[str, int, str]:
    """(outcome, peak MiB, first line) for one input; outcome in clean/accepted/traceback/hang."""
    before = _digest(source)
    try:
        res = subprocess.run([sys.executable, "-c", _CHILD, "dataset", str(source), "-o", str(out)],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang", 0, ""
    peak = next((int(x.split()[1]) for x in res.stderr.splitlines() if x.startswith("MAXRSS")), 0)
    lines = [x for x in (res.stdout + res.stderr).splitlines() if not x.startswith("MAXRSS")]
    first = lines[0] if lines else ""
    if _digest(source) != before:
        outcome = "lost"
    elif "Traceback" in res.stderr:
        outcome = "traceback"
    elif res.returncode == 1 and first.startswith("Error: ") and not out.exists():
        outcome = "clean"
    elif res.returncode == 0:
        outcome = "accepted"
    else:
        outcome = f"exit {res.returncode}"
    return outcome, peak, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    counts: dict[str, int] = {}
    worst = ("", 0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        good = root / "good"
        good.mkdir()
        (good / "img0.png").write_bytes(good_png(0))
        _, base, _ = attack("good", good, root / "good.zip", args.timeout)
        print(f"baseline: a good 1-image archive peaks at {base} MiB")
        for out_name in ("out", "out.zip"):
            for name, build in sorted(hostile_cases(root / "in" / out_name).items()):
                out = root / "work" / name / out_name
                out.parent.mkdir(parents=True, exist_ok=True)
                outcome, peak, first = attack(name, build(), out, args.timeout)
                escaped = list(root.rglob("outside*"))
                if escaped:
                    outcome = "escaped"
                counts[outcome] = counts.get(outcome, 0) + 1
                worst = max(worst, (name, peak), key=lambda t: t[1])
                print(f"{name:28s} {out_name:8s} {outcome:9s} {peak:5d} MiB  {first[:110]}")
    tried = sum(counts.values())
    ok = counts.get("clean", 0) + counts.get("accepted", 0)
    print(f"\ninputs tried {tried} / clean errors or accepted {ok} / tracebacks "
          f"{counts.get('traceback', 0)} / hangs {counts.get('hang', 0)} / data lost "
          f"{counts.get('lost', 0) + counts.get('escaped', 0)}; other: "
          f"{ {k: v for k, v in counts.items() if k not in ('clean', 'accepted')} }")
    print(f"peak resident memory: {worst[1]} MiB ({worst[0]}); this process's children max "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
