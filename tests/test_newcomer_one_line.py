"""A path typed with a newline (or another control character) in it still gives one `Error:`
line: the CLI shows it escaped, as Python writes it (issue 12 items 4 and 9, audit)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from tests.cli_errors import only_error_line

from mrisynth.cli import _Group, _one_line

ODD = "runs/a\nb\x1b[2J"  # a newline and a terminal escape


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--network", ODD, "--outdir", "g", "--seeds", "0"],
        ["report", ODD],
        ["train", "--data", ODD, "--outdir", "r"],
        ["train", "--resume", ODD, "--kimg", "1"],
        ["dataset", ODD, "-o", "d.zip"],
        ["metrics", "--network", ODD, "--metrics", "body_area64"],
    ],
)
def test_an_odd_path_stays_on_one_line(tmp_path, cli_in, args):
    line = only_error_line(cli_in(tmp_path, args))
    assert "a\\nb\\x1b[2J" in line


def test_a_commands_own_click_exception_keeps_its_exit_status():
    @click.group(cls=_Group)
    def top() -> None:
        pass

    @top.command()
    def boom() -> None:
        raise click.ClickException("x\ny")

    res = CliRunner().invoke(top, ["boom"])
    assert res.exit_code == 1 and res.output == "Error: x\\ny\n"


def test_printable_text_is_untouched():
    assert _one_line("données/é 中文 tab-free") == "données/é 中文 tab-free"
    assert _one_line("a\tb\r\n") == "a\\tb\\r\\n"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["demo", "--outdir", "--quick"], "got the option '--quick' (see `cli demo --help`)"),
        (["generate", "--network", "r", "--outdir", "--grid", "--seeds", "0"], "'--grid'"),
        (["reader-study", "create", "--outdir", "--real", "x"],
         "got the option '--real' (see `cli reader-study create --help`)"),
        (["train", "--data", "--outdir", "r"], "'--data' needs a value"),
        (["-v", "train", "--desc", "--dry-run"], "'--desc' needs a value"),
    ],
)
def test_an_option_is_not_taken_as_a_missing_value(tmp_path, cli_in, args, said):
    line = only_error_line(cli_in(tmp_path, args))
    assert said in line
    assert list(tmp_path.iterdir()) == []  # no folder named like an option


def test_a_value_that_only_looks_like_an_option_is_kept(tmp_path, cli_in):
    res = cli_in(tmp_path, ["generate", "--network", "--not-an-option", "--outdir", "g",
                            "--seeds", "0"])  # fmt: skip
    assert "--not-an-option: not found" in only_error_line(res)
