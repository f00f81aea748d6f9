"""scripts/install.sh chooses the torch build (issue 12 item 2): CUDA from PyPI with an NVIDIA
driver, the CPU wheel index without one, plain PyPI with a note when that index is unreachable,
MRISYNTH_TORCH over all; it prints one line saying what it chose and why (dry mode here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install.sh"


def choose(tmp_path, nvidia_smi_rc: int | None, env: dict[str, str] | None = None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if nvidia_smi_rc is not None:  # a stand-in nvidia-smi, found before any real one
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nexit {nvidia_smi_rc}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    full = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "MRISYNTH_INSTALL_DRY_RUN": "1",
        "MRISYNTH_NVIDIA_PROC": str(tmp_path / "no-proc-driver"),
        "MRISYNTH_TORCH_CPU_INDEX": (tmp_path / "cpu-index").as_uri(),
        **(env or {}),
    }
    res = subprocess.run(["bash", str(SCRIPT), "test"], env=full, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


@pytest.fixture
def cpu_index(tmp_path):
    (tmp_path / "cpu-index" / "torch").mkdir(parents=True)


def test_an_nvidia_driver_gets_the_cuda_build_from_pypi(tmp_path, cpu_index):
    lines = choose(tmp_path, nvidia_smi_rc=0)
    assert lines[0] == (
        "torch: torch==2.13.0 from PyPI, the CUDA build (an NVIDIA driver is present)"
    )
    assert lines[1].endswith("pip install -q torch==2.13.0")
    assert lines[2].endswith("pip install -q -e .[codecs,test]")


def test_a_driver_seen_only_in_proc_counts(tmp_path, cpu_index):
    (tmp_path / "proc").mkdir()
    env = {"MRISYNTH_NVIDIA_PROC": str(tmp_path / "proc")}
    lines = choose(tmp_path, nvidia_smi_rc=None, env=env)
    assert "CUDA build" in lines[0]


@pytest.mark.parametrize("smi", [None, 9])  # none on PATH, or one that fails (no driver loaded)
def test_no_driver_gets_the_cpu_index(tmp_path, cpu_index, smi):
    if smi is None and any(
        (Path(d) / "nvidia-smi").exists() for d in os.environ["PATH"].split(":")
    ):
        pytest.skip("a real nvidia-smi is on PATH")
    lines = choose(tmp_path, nvidia_smi_rc=smi)
    index = (tmp_path / "cpu-index").as_uri()
    assert lines[0] == f"torch: torch==2.13.0, the CPU build from {index} (no NVIDIA driver found)"
    assert lines[1].endswith(f"pip install -q torch==2.13.0 --index-url {index}")


def test_an_unreachable_cpu_index_falls_back_with_a_note(tmp_path):
    lines = choose(tmp_path, nvidia_smi_rc=9)  # no cpu-index folder: unreachable
    assert "cannot be reached" in lines[0] and "MRISYNTH_TORCH" in lines[0]
    assert lines[1].endswith("pip install -q torch==2.13.0")


def test_mrisynth_torch_wins(tmp_path, cpu_index):
    spec = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
    lines = choose(tmp_path, nvidia_smi_rc=9, env={"MRISYNTH_TORCH": spec})
    assert lines[0] == f"torch: {spec} (from MRISYNTH_TORCH)"
    assert lines[1].endswith(f"pip install -q {spec}")


def _old_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\ncase "$1" in --version) echo "Python 3.10.12";; *) exit 1;; esac\n')
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("where", ["PYTHON", ".venv"])
def test_a_python_older_than_3_11_is_refused_before_anything(tmp_path, where):
    (tmp_path / "scripts").mkdir()  # a copy, so that the checkout's own .venv is not looked at
    (tmp_path / "scripts" / "install.sh").write_bytes(SCRIPT.read_bytes())
    old = _old_python(tmp_path / (".venv/bin/python" if where == ".venv" else "bin/py310"))
    env = {"PATH": os.environ["PATH"], "PYTHON": str(old) if where == "PYTHON" else sys.executable,
           "MRISYNTH_TORCH_CPU_INDEX": (tmp_path / "nowhere").as_uri()}  # fmt: skip
    res = subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh")], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("Error: mrisynth needs Python >= 3.11") and "3.10.12" in res.stderr
    assert ("delete .venv" in res.stderr) == (where == ".venv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["scripts", ".venv" if where == ".venv" else "bin"]
    )  # no venv made


def test_a_missing_python_is_named(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHON": "no-such-python3", "MRISYNTH_INSTALL_DRY_RUN": "1"}
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "install.sh").write_bytes(SCRIPT.read_bytes())
    res = subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh")], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 1 and res.stderr.strip() == (
        "Error: no-such-python3 not found; install Python >= 3.11 or set "
        "PYTHON=/path/to/python3.11"
    )


@pytest.mark.parametrize(
    ("args", "passed"),
    [
        ([], ["demo"]),
        (["--quick"], ["demo", "--quick"]),  # was: a full demo into a folder named --quick
        (["my-demo", "--quick"], ["demo", "--outdir", "my-demo", "--quick"]),
        (["--outdir", "x", "--kimg", "8"], ["demo", "--outdir", "x", "--kimg", "8"]),
    ],
)
def test_demo_sh_hands_its_arguments_to_the_demo(tmp_path, args, passed):
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "scripts").mkdir()
    for name in ("demo.sh", "install.sh"):
        (tmp_path / "scripts" / name).write_bytes((root / "scripts" / name).read_bytes())
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    (venv / "mrisynth").write_text('#!/bin/sh\nfor a in "$@"; do echo "arg:$a"; done\n')
    (venv / "mrisynth").chmod(0o755)
    env = {"PATH": os.environ["PATH"], "MRISYNTH_INSTALL_DRY_RUN": "1", "MRISYNTH_TORCH": "torch"}
    res = subprocess.run(["bash", str(tmp_path / "scripts" / "demo.sh"), *args], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = [line[4:] for line in res.stdout.splitlines() if line.startswith("arg:")]
    assert got == passed
