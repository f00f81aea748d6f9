"""Hostile NVIDIA-style pickles: nothing in the file runs, every refusal is one `Error:` line,
inputs are never modified and nothing is written when a file is refused."""

from __future__ import annotations

import hashlib
import os
import pickle
import resource
import subprocess
from collections import OrderedDict

import pytest
import torch
from click.testing import CliRunner

import nvidia_format as nf
from mrisynth.cli import cli
from mrisynth.errors import InputError
from mrisynth.interop import nvidia_pickle
from mrisynth.interop.nvidia_import import MAX_FILE_BYTES, import_pickle
from mrisynth.interop.nvidia_pickle import LEGACY_MAGIC, PickleRefused


class Call:
    """Pickles as a call of `fn(*args)` (what a hostile __reduce__ does)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _refused(data: bytes, match: str = "") -> str:
    with pytest.raises(PickleRefused, match=match) as e:
        nvidia_pickle.loads(data)
    return str(e.value)


def _good_snapshot() -> bytes:
    G_kw, D_kw = nf.small_kwargs(res=8)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    return nf.dumps(nf.snapshot_dict(G_kw, D_kw, g, d))


@pytest.mark.parametrize(
    "fn,args",
    [
        (os.system, ("touch {marker}",)),
        (subprocess.call, (["touch", "{marker}"],)),
        (eval, ("open('{marker}', 'w')",)),
        (getattr, ("text", "upper")),
        (torch.load, ("{marker}",)),
        (pickle.loads, (b"\x80\x04N.",)),
    ],
)
def test_code_in_the_pickle_never_runs(tmp_path, fn, args):
    marker = tmp_path / "ran"
    args = tuple(a.format(marker=marker) if isinstance(a, str) else
                 [x.format(marker=marker) for x in a] if isinstance(a, list) else a for a in args)
    G_kw, D_kw = nf.small_kwargs(res=8)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    for where in ("top", "kwargs", "state"):
        snap = nf.snapshot_dict(G_kw, D_kw, g, d)
        evil = Call(fn, *args)
        if where == "top":
            snap["extra"] = evil
        elif where == "kwargs":
            snap["G"].meta["state"]["_init_kwargs"]["z_dim"] = evil
        else:
            snap["D"].meta["state"]["_modules"]["b8"].meta["state"]["flag"] = evil
        text = _refused(nf.dumps(snap), "asks for")
        assert "could run code" in text
    assert not marker.exists()


def test_module_source_is_text_never_executed(tmp_path):
    marker = tmp_path / "ran"
    G_kw, D_kw = nf.small_kwargs(res=8)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap["G"].meta["module_src"] = f"import os\nos.system('touch {marker}')\n"
    path = tmp_path / "x.pkl"
    path.write_bytes(nf.dumps(snap))
    import_pickle(path)  # a normal network: converted, its source text ignored
    assert not marker.exists()


def test_truncated_and_trailing_data(tmp_path):
    data = _good_snapshot()
    for cut in (1, 2, 100, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1):
        _refused(data[:cut], "not a complete pickle|not a pickle of protocol")
    _refused(data + b"\x00", "bytes after the end")
    _refused(b"", "not a pickle")


@pytest.mark.parametrize(
    "data,match",
    [
        (b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"abc", "not a complete pickle"),
        (b"\x80\x02\x8b" + (2**31 - 1).to_bytes(4, "little") + b"\x01.", "not a complete"),
        (b"\x80\x02]r\xff\xff\xff\xff.", "memo slot"),
        (b"\x80\x02}}b.", "BUILD"),
        (b"\x80\x02(cos\nsystem\no.", "OBJ"),
        (b"\x80\x02(ios\nsystem\nX\x01\x00\x00\x00x.", "INST"),
        (b"\x80\x02X\x01\x00\x00\x00xQ.", "BINPERSID"),
        (b"\x80\x02\x82\x01.", "EXT1"),
        (b"\x80\x02cbuiltins\nexec\n.", "builtins.exec"),
        (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93.", "os.system"),
        (b"\x80\x02ccollections\nOrderedDict\n.", "holds a value of type function"),
        (b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".", "nests deeper"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a pickle"),
        (b"PK\x03\x04" + b"\x00" * 40, "ZIP archive"),
        (b"not a pickle at all", "not a pickle"),
        (b"\x80\x02", "not a complete pickle"),
    ],
)
def test_hostile_opcode_streams(data, match):
    _refused(data, match)


def _storage_bytes(numel_claim: int, count: int, payload: bytes, little: bool = True) -> bytes:
    """torch's legacy storage stream with chosen size claims (as `_load_from_bytes` gets it)."""
    sentinel = object()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is sentinel:
                return ("storage", torch.FloatStorage, "k", "cpu", numel_claim, None)
            return None

    import io

    buf = io.BytesIO()
    for value in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": little,
                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(value, buf, protocol=2)
    P(buf, protocol=2).dump(sentinel)
    pickle.dump(["k"], buf, protocol=2)
    buf.write(count.to_bytes(8, "little") + payload)
    return buf.getvalue()


def _tensor_pickle(storage: bytes, size=(4,), stride=(1,), offset=0) -> bytes:
    store = Call(torch.storage._load_from_bytes, storage)
    tensor = Call(torch._utils._rebuild_tensor_v2, store, offset, size, stride, False,
                  OrderedDict())
    return pickle.dumps({"t": tensor}, protocol=3)


def test_storage_parser_checks_claims_against_bytes():
    good = _storage_bytes(4, 4, b"\x00" * 16)
    assert nvidia_pickle.loads(_tensor_pickle(good))["t"].shape == (4,)
    for claim, count, payload in [(2**40, 2**40, b"\x00" * 16), (4, 4, b"\x00" * 15),
                                  (4, 5, b"\x00" * 20), (2**62, 4, b"\x00" * 16)]:
        _refused(_tensor_pickle(_storage_bytes(claim, count, payload)), "claiming")
    _refused(_tensor_pickle(_storage_bytes(4, 4, b"\x00" * 16, little=False)), "little-endian")
    _refused(_tensor_pickle(good[:-3]), "claiming")
    _refused(_tensor_pickle(b"\x80\x02cos\nsystem\n."), "legacy format|asks for")
    _refused(_tensor_pickle(good, size=(100,)), "reaching element")
    _refused(_tensor_pickle(good, size=(2, 2), stride=(3, 1)), "reaching element")
    _refused(_tensor_pickle(good, offset=-1), "offset")
    _refused(_tensor_pickle(good, size=(2**50,)), "reaching element|bad size")
    _refused(_tensor_pickle(good, size=(1,) * 20, stride=(1,) * 20), "bad size")
    _refused(_tensor_pickle(good, size="4"), "bad size")
    _refused(_tensor_pickle(good, size=(2**30,), stride=(0,)), "over a storage of 4")
    big = Call(torch.storage._load_from_bytes, _storage_bytes(2**18, 2**18, b"\x00" * 2**20))
    many = [Call(torch._utils._rebuild_tensor_v2, big, 0, (2**18,), (1,), False, None)
            for _ in range(1000)]  # 1 MB of data named 1000 times: 1 GB of tensors
    _refused(pickle.dumps(many, protocol=3), "more data than the file holds")
    bad_store = Call(torch._utils._rebuild_tensor_v2, "storage", 0, (1,), (1,), False, None)
    _refused(pickle.dumps(bad_store, protocol=3), "not a storage")
    _refused(pickle.dumps(Call(torch.storage._load_from_bytes, 7), protocol=3), "not bytes")


def test_records_of_unknown_kinds_are_refused(tmp_path):
    G_kw, D_kw = nf.small_kwargs(res=8)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    cases = []
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap["G"].meta["class_name"] = "Evil"
    cases.append((snap, "G is a 'Evil', expected 'Generator'"))
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap["D"].meta["type"] = "function"
    cases.append((snap, "not a class record"))
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap["G_ema"].meta["state"] = [1, 2]
    cases.append((snap, "state is not a dictionary"))
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap["G"].meta["state"]["_modules"]["mapping"] = {"fc0": 1}
    cases.append((snap, "mapping is not a network record"))
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    nested: list = []
    for _ in range(200):
        nested = [nested]
    snap["G"].meta["state"]["_init_kwargs"]["mapping_kwargs"] = nested
    cases.append((snap, "nests deeper"))
    cases.append(([1, 2, 3], "holds a list"))
    cases.append(({"training_set_kwargs": {}}, "holds no generator"))
    cases.append(({"G": {"a": 1}}, "G is a dict"))
    for i, (obj, match) in enumerate(cases):
        path = tmp_path / f"{i}.pkl"
        path.write_bytes(nf.dumps(obj))
        with pytest.raises(InputError, match=match):
            import_pickle(path)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_refusals_are_one_line_and_write_nothing(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Call(os.system, f"touch {tmp_path / 'ran'}")))
    good = tmp_path / "good.pkl"
    good.write_bytes(_good_snapshot())
    before = {p: _sha(p) for p in (evil, good)}
    out = tmp_path / "out.safetensors"
    cases = [
        ([evil, "-o", out], "refused: the file asks for posix.system"),
        ([tmp_path / "missing.pkl", "-o", out], "does not exist"),
        ([tmp_path, "-o", out], "is a directory"),
        ([good, "-o", tmp_path / "out.pt"], "name it *.safetensors"),
        ([good, "-o", tmp_path], "name it *.safetensors"),
        ([good], "Missing option"),
        ([good, "-o", good / "x.safetensors"], "good.pkl is a file, not a folder"),
        ([good, "-o", good / "a" / "x.safetensors"], "good.pkl is a file, not a folder"),
    ]
    for args, match in cases:
        res = CliRunner().invoke(cli, ["import-nvidia", *map(str, args)])
        assert res.exit_code == 1 or res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and match in lines[0], res.output
    assert not out.exists() and not (tmp_path / "ran").exists()
    assert {p: _sha(p) for p in (evil, good)} == before
    res = CliRunner().invoke(cli, ["import-nvidia", str(good), "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["import-nvidia", str(good), "-o", str(out)])
    assert res.exit_code == 1 and "exists" in res.output
    res = CliRunner().invoke(cli, ["import-nvidia", str(good), "-o", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert _sha(good) == before[good]
    disguised = tmp_path / "model.safetensors"  # an NVIDIA pickle named like our output
    disguised.write_bytes(good.read_bytes())
    for target in ("model.safetensors", "model.json"):
        if target == "model.json":
            disguised = disguised.rename(tmp_path / "model.json")
        res = CliRunner().invoke(cli, ["import-nvidia", str(disguised), "--force", "-o",
                                       str(tmp_path / "model.safetensors")])
        assert res.exit_code == 1 and "would overwrite the input" in res.output, res.output
        assert _sha(disguised) == before[good]
    disguised.unlink()
    res = CliRunner().invoke(cli, ["import-nvidia", str(good), "-o", "/proc/x/m.safetensors"])
    assert res.exit_code == 1 and res.output.startswith("Error: /proc/x/m.safetensors")
    with pytest.raises(InputError, match="not a regular file"):
        import_pickle(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evil.pkl", "good.pkl", "out.json", "out.safetensors"]


_ODD_VALUES = [torch.ones(2), torch.tensor(3.0), b"x", frozenset(["a"]), {"a": 1}, [1], None,
               1e300, -1, 2**62, "x", True, float("nan"), (1, 2), {}]


def _kwargs_cases():
    G_kw, D_kw = nf.small_kwargs(res=8)
    subs = {"synthesis_kwargs": ["channel_base", "num_fp16_res", "conv_clamp", "architecture",
                                 "resample_filter", "use_noise", "kernel_size"],
            "mapping_kwargs": ["num_layers", "lr_multiplier", "w_avg_beta", "embed_features"],
            "block_kwargs": ["activation", "freeze_layers"],
            "epilogue_kwargs": ["mbstd_group_size", "mbstd_num_channels"]}
    for kind, kw in (("Generator", G_kw), ("Discriminator", D_kw)):
        for key in [*kw, "cmap_dim"]:
            yield kind, dict(kw, **{key: "VALUE"})
            for sub_key in subs.get(key, []):
                yield kind, dict(kw, **{key: nf.EasyDict(kw[key], **{sub_key: "VALUE"})})


def test_any_value_in_any_init_kwarg_is_one_input_error():
    """Every kwarg (and nested kwarg) set to values of every odd type: an InputError or a
    network, never another exception (a tensor there used to raise RuntimeError)."""
    from mrisynth.interop import nvidia_networks as nn_
    from mrisynth.interop.nvidia_pickle import PersistentRecord

    def fill(value, v):
        if value == "VALUE":
            return v
        return {k: fill(x, v) for k, x in value.items()} if isinstance(value, dict) else value

    for kind, kwargs in _kwargs_cases():
        for v in _ODD_VALUES:
            rec = PersistentRecord(kind, "", 6, {"_init_kwargs": fill(kwargs, v)})
            call = nn_.generator_config if kind == "Generator" else nn_.discriminator_config
            try:
                nn_.checked(call, "x.pkl", rec)
            except InputError as e:
                assert str(e).startswith("x.pkl: ") and "\n" not in str(e)


def test_a_record_whose_module_state_has_the_wrong_shape_is_refused(tmp_path):
    """_parameters/_buffers/_modules/_init_kwargs/_init_args are read by the converters; a
    tensor or text there raised RuntimeError/AttributeError (e.g. the augment pipe's _buffers)."""
    for key in ("_parameters", "_buffers", "_modules", "_init_kwargs", "_init_args"):
        for value in (torch.ones(2), "text", 3, ({"a": 1} if key == "_init_args" else [1])):
            rec = nf.record("Generator", {}, {}, {}, {})
            rec.meta["state"][key] = value
            _refused(nf.dumps(rec), f"whose {key} is a")
    G_kw, D_kw = nf.small_kwargs(res=8)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap["augment_pipe"].meta["state"]["_buffers"] = torch.ones(2)
    path = tmp_path / "x.pkl"
    path.write_bytes(nf.dumps(snap))
    with pytest.raises(InputError, match="AugmentPipe whose _buffers is a Tensor"):
        import_pickle(path)


def test_the_library_never_blocks_on_a_pipe(tmp_path):
    """The check is made on the opened descriptor (non-blocking open), not on the name first:
    a pipe swapped in after a check of the name cannot hang the read."""
    fifo = tmp_path / "network-snapshot-000000.pkl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        import_pickle(fifo)
    with pytest.raises(InputError, match="cannot be read"):
        import_pickle(tmp_path / "missing.pkl")


def test_a_file_over_the_size_cap_is_refused_before_reading(tmp_path):
    """A sparse 4 GiB + 1 byte file was read into memory (4 GiB) before the size check."""
    huge = tmp_path / "network-snapshot-000001.pkl"
    with open(huge, "wb") as f:
        f.write(b"\x80\x03")
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = tmp_path / "o.safetensors"
    res = CliRunner().invoke(cli, ["import-nvidia", str(huge), "-o", str(out)])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "over 4 GiB" in res.output
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 2**10
