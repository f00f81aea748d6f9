"""Tampered and foreign snapshots: every hostile value gives one clean error naming the file,
before anything is allocated, and a failed resume changes nothing on disk."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tests.test_train import tiny, write_archive

from mrisynth.cli import cli
from mrisynth.errors import CheckpointError, MrisynthError
from mrisynth.networks import NetworkConfig
from mrisynth.training import checkpoint, snapshot_format
from mrisynth.training.loop import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(archive, run folder) of a real one-tick run."""
    root = tmp_path_factory.mktemp("schema")
    data = write_archive(root / "discs", n=8)
    return data, train(tiny(data, root / "runs", kimg=0.008))


def forge(weights, edit_state=None, edit_config=None, raw_state=None, raw_config=None) -> None:
    """Rewrite a snapshot's header with edited values and a matching digest (a deliberate edit,
    not corruption: only the schema can catch it)."""
    tensors = load_file(str(weights))
    with safe_open(str(weights), framework="pt") as f:
        meta = dict(f.metadata())
    if edit_state:
        state = json.loads(meta["state"])
        edit_state(state)
        meta["state"] = json.dumps(state)
    if edit_config:
        cfg = json.loads(meta["G_config"])
        edit_config(cfg)
        meta["G_config"] = json.dumps(cfg)
    if raw_state is not None:
        meta["state"] = raw_state
    if raw_config is not None:
        meta["G_config"] = raw_config
    texts = {k: v for k, v in meta.items() if k == "state" or k.endswith("_config")}
    meta["digest"] = snapshot_format.digest(texts, sorted(tensors), tensors.__getitem__)
    save_file(tensors, str(weights), metadata=meta)


def setter(path: str, value):
    """A state edit that sets the dotted `path` (list indices allowed) to `value`."""

    def edit(obj):
        *parents, last = path.split(".")
        for key in parents:
            obj = obj[int(key)] if isinstance(obj, list) else obj[key]
        if value is DELETE:
            del obj[last]
        elif isinstance(obj, list):
            obj[int(last)] = value
        else:
            obj[last] = value

    return edit


DELETE = object()
DEEP = "[" * 100_000 + "]" * 100_000
STATE_CASES = {
    "kimg text": setter("kimg", "abc"),
    "kimg 1e30": setter("kimg", 1e30),
    "kimg huge int": setter("kimg", 10**30),
    "kimg bool": setter("kimg", True),
    "nimg negative": setter("nimg", -8),
    "nimg vs kimg": lambda s: (setter("nimg", 999_999)(s), setter("loop.nimg", 999_999)(s)),
    "loop.nimg differs": setter("loop.nimg", 0),
    "loop extra key": setter("loop.evil", 1),
    "loop.step text": setter("loop.step", "x"),
    "loop.data_batches float": setter("loop.data_batches", 2.5),
    "augment_p 2": setter("augment_p", 2.0),
    "pl_mean negative": setter("pl_mean", -1.0),
    "world_size 0": setter("world_size", 0),
    "world_size vs rng": setter("world_size", 2),
    "rng empty": setter("rng", []),
    "rng numpy short": setter("rng.0.numpy.1", [1, 2, 3]),
    "rng numpy name": setter("rng.0.numpy.0", "PCG64"),
    "rng python key": setter("rng.0.python.1.0", -1),
    "rng missing": setter("rng", DELETE),
    "opt lr text": setter("opt_G.param_groups.0.lr", "abc"),
    "opt betas short": setter("opt_G.param_groups.0.betas", [0.0]),
    "opt no groups": setter("opt_D.param_groups", []),
    "opt params huge": setter("opt_D.param_groups.0.params", list(range(200_000))),
    "opt param index huge": setter("opt_D.param_groups.0.params.0", 10**7),
    "opt scalars key": setter("opt_G.scalars", {"x": {}}),
    "ada sums text": setter("ada", [{"sum_signs": "x", "count": 1}]),
    "options kimg text": setter("options.kimg", "abc"),
    "options batch huge": setter("options.batch", 10**12),
    "options aug": setter("options.aug", "evil"),
    "options metrics dict": setter("options.metrics", {"a": 1}),
    "options seed float": setter("options.seed", 1.5),
    "options missing": setter("options", DELETE),
    "dataset_hash long": setter("dataset_hash", "x" * 10_000),
    "loop a list": setter("loop", [1, 2]),
}
RAW_STATE_CASES = {
    "state NaN": '{"kimg": NaN}',
    "state Infinity nimg": '{"kimg": 0, "nimg": Infinity}',
    "state deep nesting": DEEP,
    "state not JSON": "{",
    "state a list": "[]",
    "state empty": "",
}
CONFIG_CASES = {
    "z_dim 1e9": setter("z_dim", 10**9),
    "channel_base 2^40": setter("channel_base", 2**40),
    "channel_max huge": setter("channel_max", 4096),  # with cbase: billions of parameters
    "img_resolution text": setter("img_resolution", "16"),
    "img_resolution 3": setter("img_resolution", 3),
    "w_avg_beta NaN": setter("w_avg_beta", math.nan),
    "conv_clamp negative": setter("conv_clamp", -1.0),
    "fused_modconv text": setter("fused_modconv", "yes"),
    "mixed_precision": setter("mixed_precision", "fp8"),
    "c_dim 2e9": setter("c_dim", 2 * 10**9),
    "img_channels missing": setter("img_channels", DELETE),
}
RAW_CONFIG_CASES = {"config deep nesting": DEEP, "config a number": "7", "config garbage": "\x00"}


def _run_copy(trained, tmp_path):
    data, run_dir = trained
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    return data, copy, checkpoint.list_snapshots(copy)[-1]


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _expect_clean_failure(data, run_dir, weights):
    before = _files(run_dir)
    with pytest.raises(CheckpointError) as err:
        train(tiny(data, run_dir.parent / "unused", kimg=0.04, resume=str(weights)))
    message = str(err.value)
    assert str(weights) in message and "\n" not in message and len(message) < 400
    assert _files(run_dir) == before  # stats.jsonl, snapshots, log: nothing changed
    assert not (run_dir.parent / "unused").exists()
    return message


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_tampered_state_is_refused_before_anything_changes(trained, tmp_path, case):
    data, run_dir, weights = _run_copy(trained, tmp_path)
    forge(weights, edit_state=STATE_CASES[case])
    message = _expect_clean_failure(data, run_dir, weights)
    # The schema's own words: a later guard (optimiser/ADA restore) must not be what caught it.
    ours = ("invalid snapshot (state", "cannot continue this run", "holds no training state")
    assert any(words in message for words in ours), message


@pytest.mark.parametrize("case", sorted(RAW_STATE_CASES))
def test_unparseable_state_is_refused(trained, tmp_path, case):
    data, run_dir, weights = _run_copy(trained, tmp_path)
    forge(weights, raw_state=RAW_STATE_CASES[case])
    _expect_clean_failure(data, run_dir, weights)


@pytest.mark.parametrize("case", sorted(CONFIG_CASES) + sorted(RAW_CONFIG_CASES))
def test_tampered_network_config_is_refused_before_building(trained, tmp_path, case):
    data, run_dir, weights = _run_copy(trained, tmp_path)
    if case in CONFIG_CASES:
        edit = CONFIG_CASES[case]
        if case == "channel_max huge":
            edit = lambda c: (c.update(channel_max=4096, channel_base=2**22))  # noqa: E731
        forge(weights, edit_config=edit)
    else:
        forge(weights, raw_config=RAW_CONFIG_CASES[case])
    _expect_clean_failure(data, run_dir, weights)
    with pytest.raises(CheckpointError, match="network-snapshot"):
        checkpoint.load_generator(weights)  # what generate and metrics call


def test_a_run_folder_whose_only_snapshot_is_tampered_is_one_error(trained, tmp_path):
    data, run_dir, _ = _run_copy(trained, tmp_path)
    for w in checkpoint.list_snapshots(run_dir):
        forge(w, edit_state=setter("nimg", -8))
    before = _files(run_dir)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--resume", str(run_dir),
                                      "--workers", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert str(run_dir) in result.output and "every snapshot is corrupt" in result.output
    assert _files(run_dir) == before


def test_network_config_bounds_leave_the_published_presets_alone():
    from mrisynth.config import PRESETS, resolve_preset
    from mrisynth.networks import network_config_from_preset

    for name in PRESETS:
        cfg = network_config_from_preset(resolve_preset(name, 256), 3, c_dim=10)
        assert NetworkConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(MrisynthError, match="z_dim"):
        NetworkConfig.from_dict({"img_resolution": 16, "img_channels": 1, "z_dim": 10**9})
    big = {"img_resolution": 1024, "img_channels": 3, "channel_base": 2**22, "channel_max": 4096}
    with pytest.raises(MrisynthError, match="parameters"):
        NetworkConfig.from_dict(big)
