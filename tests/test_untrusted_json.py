"""JSON and JSONL that anyone could have written go through `mrisynth.untrusted`: absurd
nesting, NaN, huge integers and foreign bytes are skipped or refused, never a traceback."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from mrisynth import untrusted
from mrisynth.cli import cli
from mrisynth.metrics import records
from mrisynth.training.run_files import drop_stats_after

DEEP = "[" * 100_000 + "]" * 100_000


def test_loads_and_number_refuse_what_would_crash():
    with pytest.raises(untrusted.BadValue, match="nested too deeply"):
        untrusted.loads(DEEP, "x")
    with pytest.raises(untrusted.BadValue, match="NaN"):
        untrusted.loads('{"a": NaN}', "x")
    assert math.isnan(untrusted.loads('{"a": NaN}', "x", allow_nan=True)["a"])
    with pytest.raises(untrusted.BadValue, match="finite number"):
        untrusted.number(10**400, "x")  # float() of it overflows
    assert untrusted.number(2**1010, "x") == float(2**1010)


def test_read_jsonl_skips_every_kind_of_bad_line(tmp_path, monkeypatch):
    path = tmp_path / "metric-x.jsonl"
    good = {"snapshot": "s", "results": {"x": 1.0}}
    path.write_bytes(
        b"\n".join(
            [
                json.dumps(good).encode(),
                DEEP.encode(),
                b"\xff\xfe not utf-8",
                b'{"snapshot": "t", "results": {"x": NaN}}',
                b"[1, 2]",
                b'{"snapshot": "u", "res',  # torn by a kill
            ]
        )
    )
    objs = untrusted.read_jsonl(path)
    assert [o["snapshot"] for o in objs] == ["s", "t"]
    assert [r["snapshot"] for r in records.read_records(path)] == ["s", "t"]
    assert untrusted.read_jsonl(path, max_bytes=10) == []  # oversized: left out whole
    assert untrusted.read_jsonl(tmp_path / "missing.jsonl") == []


def test_best_snapshot_survives_a_hostile_metric_file(tmp_path):
    line = {"metric": "fid2k_full", "snapshot": "network-snapshot-000004.safetensors",
            "kimg": 4, "results": {"fid2k_full": 12.0}}
    (tmp_path / "metric-fid2k_full.jsonl").write_text(DEEP + "\n" + json.dumps(line) + "\n")
    res = CliRunner().invoke(cli, ["metrics", "--network", str(tmp_path), "--best", "fid2k_full"])
    assert res.exit_code == 0, res.output
    assert "network-snapshot-000004" in res.output


def test_resume_drops_only_its_own_later_ticks_and_keeps_foreign_bytes(tmp_path):
    path = tmp_path / "stats.jsonl"
    tick = lambda kimg: json.dumps({"Progress/kimg": {"mean": kimg}}).encode()  # noqa: E731
    foreign = [DEEP.encode(), b'{"Progress/kimg": {"mean": "x"}}', b"\xff\xfe raw", b"{torn"]
    path.write_bytes(b"\n".join([tick(0), tick(4), *foreign, tick(8)]) + b"\n")
    assert drop_stats_after(path, nimg=4000) == 1
    assert path.read_bytes() == b"\n".join([tick(0), tick(4), *foreign]) + b"\n"


def test_huge_integers_in_json_are_refused_not_raised():
    with pytest.raises(untrusted.BadValue, match="not valid JSON"):  # json's 4300-digit limit
        untrusted.loads('{"a": ' + "9" * 5000 + "}", "x")
    from mrisynth.data.labels import label_table, parse_dataset_json
    from mrisynth.errors import InputError

    obj = parse_dataset_json(('{"labels": [["a.png", [1' + "0" * 400 + "]]]}").encode(), "d")
    with pytest.raises(InputError, match="finite numbers"):  # was an OverflowError
        label_table(obj, "d")
