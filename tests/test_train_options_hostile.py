"""Hostile numbers on the train command line: one Error line naming the option, no traceback,
nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tests.test_train import write_archive

from mrisynth.cli import cli

HOSTILE = [
    ("--kimg", "nan"), ("--kimg", "inf"), ("--kimg", "-1"), ("--kimg", "1e30"),
    ("--tick", "nan"), ("--tick", "0"), ("--min-free-gb", "nan"), ("--min-free-gb", "-1"),
    ("--target", "nan"), ("--target", "2"), ("--ada-kimg", "0"), ("--ada-kimg", "inf"),
    ("--glr", "inf"), ("--gamma", "inf"), ("--p-max", "nan"), ("--stop-after-kimg", "nan"),
    ("--seed", "-1"), ("--seed", "99999999999"), ("--batch", "100000000"),
    ("--cbase", "99999999999"), ("--cmax", "100000"), ("--map-depth", "1000"),
    ("--mbstd-group", "100000"), ("--batch-gpu", "100000000"),
    ("--seed", "1" + "0" * 400), ("--gpus", "1" + "0" * 400),  # ints beyond any float
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("opts") / "discs", n=4)


@pytest.mark.parametrize(("flag", "value"), HOSTILE)
def test_hostile_number_is_one_error_line_and_writes_nothing(data, tmp_path, flag, value):
    out = tmp_path / "runs"
    args = ["train", "--data", str(data), "--outdir", str(out), "--cfg", "tiny", "--workers", "0",
            "--device", "cpu", flag, value]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2), result.output  # 2: click's own range check
    assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)
    errors = [x for x in result.output.splitlines() if x.startswith("Error")]
    assert len(errors) == 1 and flag in errors[0], result.output
    assert not out.exists() or not any(out.iterdir())
