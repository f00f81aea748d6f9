"""Class names through training options and snapshots; `generate --position/--label`."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.test_conditions import _manifest_folder
from tests.test_generate import tiny_generator

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.errors import ConfigError, InputError
from mrisynth.generate.classes import pick_class, snapshot_class_names
from mrisynth.training.checkpoint import save_snapshot
from mrisynth.training.options import TrainOptions, resolve_for_archive

NAMES = [f"{s}+pos{lo}" for s in ("t1_in", "t1_opp", "t2spir")
         for lo in ("0.00-0.50", "0.50-1.00")]


@pytest.fixture(scope="module")
def named_snapshot(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    G = tiny_generator(c_dim=len(NAMES))
    state = {"kimg": 1, "resolved": {"classes": NAMES, "c_dim": len(NAMES)}}
    return save_snapshot(run / "network-snapshot-000001.safetensors", G=G, D=None, G_ema=G,
                         state=state)


def test_pick_class_by_position_and_label():
    assert pick_class(NAMES, 6, position=0.7, label="t1-opp") == 3
    assert pick_class(NAMES, 6, position=0.0, label="T2SPIR") == 4
    assert pick_class(NAMES, 6, position=1.0, label="t2spir+pos0.50-1.00") == 5
    assert pick_class(NAMES, 6, label="t1_in+pos0.00-0.50") == 0
    pos = ["pos0.00-0.25", "pos0.25-0.50", "pos0.50-0.75", "pos0.75-1.00"]
    assert [pick_class(pos, 4, position=p) for p in (0, 0.3, 0.5, 0.99, 1)] == [0, 1, 2, 3, 3]
    assert pick_class(["t1_in", "t1_opp"], 2, label="t1-opp") == 1
    with pytest.raises(ConfigError, match=r"fits 3 classes .*add --label SEQUENCE"):
        pick_class(NAMES, 6, position=0.2)  # (it said: add --position or --label)
    with pytest.raises(ConfigError, match=r"fits 2 classes .*add --position P \(0 = top"):
        pick_class(NAMES, 6, label="t1_in")
    with pytest.raises(ConfigError, match="use --class N"):
        pick_class(["T1-in", "t1_IN"], 2, label="t1_in")
    with pytest.raises(ConfigError, match="no such class"):
        pick_class(NAMES, 6, label="flair")
    with pytest.raises(ConfigError, match="no such class") as err:
        pick_class(NAMES, 6, label="x" * 100_000)
    assert len(str(err.value)) < 400
    for empty in ("", "  "):  # it matched every position-only class ('fits 4 classes')
        with pytest.raises(ConfigError, match=r"--label '\s*': empty; give a class"):
            pick_class(pos, 4, label=empty)
    with pytest.raises(ConfigError, match=r"--label 'a\\nError: b': no such") as err:
        pick_class(NAMES, 6, label="a\nError: b")  # one line, whatever was typed
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no position classes"):
        pick_class(["t1_in", "t1_opp"], 2, position=0.5)
    for bad in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="0 \\(top\\) to 1"):
            pick_class(pos, 4, position=bad)
    with pytest.raises(ConfigError, match="unconditional"):
        pick_class(None, 0, position=0.5)
    with pytest.raises(ConfigError, match="2 class names for 3"):
        pick_class(["a", "b"], 3, label="a")


def _gen(args):
    return CliRunner().invoke(cli, ["generate", "--no-progress", "--seeds", "0-1", *args])


def test_generate_by_name_equals_generate_by_index(named_snapshot, tmp_path):
    assert snapshot_class_names(named_snapshot) == NAMES
    res = _gen(["--network", str(named_snapshot), "--outdir", str(tmp_path / "a"),
                "--position", "0.7", "--label", "t1-opp"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "a" / "generation.json").read_text())
    assert record["sampling"]["class_idx"] == 3
    assert record["class_name"] == NAMES[3] and f"class 3 ({NAMES[3]})" in res.output
    res = _gen(["--network", str(named_snapshot.parent), "--outdir", str(tmp_path / "b"),
                "--class", "3"])
    assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "b" / "generation.json").read_text())
    assert b["class_name"] == NAMES[3]  # --class N on a named model says which class it was
    for png in sorted((tmp_path / "a").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b" / png.name).read_bytes()


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--position", "0.3"], "fits 3 classes"),
        (["--label", "flair"], "no such class"),
        (["--position", "nan", "--label", "t1_in"], "0 (top) to 1"),
        (["--position", "2", "--label", "t1_in"], "0 (top) to 1"),
        (["--class", "1", "--label", "t1_in"], "not both"),
    ],
)
def test_generate_by_name_errors(named_snapshot, tmp_path, args, msg):
    res = _gen(["--network", str(named_snapshot), "--outdir", str(tmp_path / "o"), *args])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and msg in res.output
    assert "Traceback" not in res.output
    assert not any((tmp_path / "o").glob("*.png"))


def test_unnamed_and_tampered_snapshots(tmp_path):
    G = tiny_generator(c_dim=2)
    plain = save_snapshot(tmp_path / "network-snapshot-000001.safetensors", G=G, D=None,
                          G_ema=G, state={"kimg": 1})
    res = _gen(["--network", str(plain), "--outdir", str(tmp_path / "o"), "--label", "a"])
    assert res.exit_code == 1 and "use --class N" in res.output
    for names in (["a", "a"], ["a\x1b[2J", "b"], [1, 2], "ab"):
        bad = save_snapshot(tmp_path / "x" / "network-snapshot-000001.safetensors", G=G, D=None,
                            G_ema=G, state={"kimg": 1, "resolved": {"classes": names}})
        res = _gen(["--network", str(bad), "--outdir", str(tmp_path / "o"), "--label", "a"])
        assert res.exit_code == 1 and "state.resolved.classes" in res.output, res.output


def test_training_records_the_archive_class_names(tmp_path):
    rows = [{"file": f"i{i}.png"} for i in range(4)]
    src = _manifest_folder(tmp_path / "src", rows)
    obj = {"labels": [[f"i{i}.png", i % 2] for i in range(4)],
           "mrisynth": {"classes": ["top", "bottom"], "num_classes": 2}}
    (src / "dataset.json").write_text(json.dumps(obj))
    arc = ImageArchive(src)
    r = resolve_for_archive(TrainOptions(data=str(src), cfg="tiny", cond=True, device="cpu"),
                            arc, resuming=False)
    assert json.loads(json.dumps(r.to_dict()))["classes"] == ["top", "bottom"]
    r = resolve_for_archive(TrainOptions(data=str(src), cfg="tiny", device="cpu"), arc, False)
    assert r.classes == ()
    obj["mrisynth"]["classes"] = ["top", "bottom", "extra"]
    (src / "dataset.json").write_text(json.dumps(obj))
    with pytest.raises(InputError, match="3 class names for 2 classes"):
        resolve_for_archive(TrainOptions(data=str(src), cfg="tiny", cond=True, device="cpu"),
                            ImageArchive(src), False)


def test_no_class_names_every_way_to_ask(named_snapshot, tmp_path):
    """A named conditional model given no class lists --position/--label with its classes
    (it only said 'pass --class 0..5'); an unnamed one still asks for --class alone."""
    res = _gen(["--network", str(named_snapshot), "--outdir", str(tmp_path / "o")])
    assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
    assert "pass --class 0..5, or --position P" in res.output and NAMES[3] in res.output
    assert not (tmp_path / "o").exists()
    G = tiny_generator(c_dim=2)
    plain = save_snapshot(tmp_path / "p" / "network-snapshot-000001.safetensors", G=G, D=None,
                          G_ema=G, state={"kimg": 1})
    res = _gen(["--network", str(plain), "--outdir", str(tmp_path / "o")])
    assert res.exit_code == 1 and "pass --class 0..1" in res.output
    assert "--position" not in res.output


def test_every_bin_count_has_distinct_names_and_position_finds_each_bin():
    """Names round to 2 decimals (pos0.02-0.03 at K = 64): none may collide, and --position
    at a bin's centre or edges must pick the bin `dataset` put those slices in."""
    from mrisynth.data.conditions import bin_name, position_bin

    for k in range(2, 65):
        names = [bin_name(i, k) for i in range(k)]
        assert len(set(names)) == k
        for i in range(k):
            for p in ((i + 0.5) / k, i / k, min((i + 1) / k, 1.0)):
                assert pick_class(names, k, position=p) == position_bin(p, k)
