"""Shared test settings: CPU only, one thread per test worker (the suite runs with -n 2), and
the `cli_in` fixture (the CLI run from a given folder) and `dicom_tree` (a one-patient phantom
DICOM tree, read-only: tests that change a tree copy it first)."""

import os

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MRISYNTH_CACHE_DIR", os.path.join(os.getcwd(), ".pytest_cache", "mrisynth"))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass


@pytest.fixture
def cli_in():
    """`cli_in(folder, args) -> click Result`: `mrisynth ARGS` typed in `folder` (relative
    paths are the user's), the working directory restored after each call, also on failure.
    Works with module-scoped folders, which `monkeypatch.chdir` (one test long) cannot serve."""
    from click.testing import CliRunner

    from mrisynth.cli import cli

    def invoke(folder, args):
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(folder)
            return CliRunner().invoke(cli, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def dicom_tree(tmp_path_factory):
    """A one-patient, small phantom DICOM tree (T1 in/opposed phase, CHAOS layout, masks)."""
    from click.testing import CliRunner

    from mrisynth.cli import cli

    tree = tmp_path_factory.mktemp("dicomtree") / "tree"
    res = CliRunner().invoke(
        cli, ["phantom", str(tree), "--patients", "1", "--small", "--no-t2spir"]
    )
    assert res.exit_code == 0, res.output
    return tree
