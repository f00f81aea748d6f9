"""Run and evaluation folders in the contract formats for the report tests (snapshots, stats,
metric records, verdicts, audits), and checks of the rendered page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from mrisynth.config import resolve_preset
from mrisynth.imaging import encode_png
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.training.checkpoint import save_snapshot

KIMGS = [0, 4, 8]
PRECISION = [0.10, 0.55, 0.40]
RECALL = [0.00, 0.05, 0.12]
FID = [300.0, 60.0, 45.0]
KID = [0.30, 0.02, 0.03]


def jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def metric_records(name: str, results: list[dict], num_gen: int, exact: bool) -> list[dict]:
    det = {"name": "inception-2015-12-05.pt" if exact else "standin-inception", "sha256": "0"}
    return [
        {
            "metric": name,
            "snapshot": f"network-snapshot-{k:06d}.safetensors",
            "kimg": k,
            "results": r,
            "num_gen": num_gen,
            "num_real": 20,
            "detector": det,
            "reference_exact": exact,
            "timestamp": 1.0 + k,
        }
        for k, r in zip(KIMGS, results, strict=True)
    ]


def make_run(root: Path, with_metrics: bool) -> Path:
    """A run folder as training + metrics write it: options, stats, grids, snapshots, metrics."""
    run = root / "00000-tiny"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = root / "archive"
    data.mkdir()
    for i in range(6):
        (data / f"img{i:04d}.png").write_bytes(
            encode_png(rng.integers(0, 256, (1, 16, 16), dtype=np.uint8))
        )
    (run / "training_options.json").write_text(
        json.dumps(
            {
                "user": {"data": str(data), "cfg": "tiny", "target": 0.6, "kimg": 8, "aug": "ada"},
                "resolution": 16,
                "batch": 16,
            }
        )
    )
    ticks = []
    for t, kimg in enumerate(np.linspace(0, 8, 9)):
        ticks.append(
            {
                "Progress/tick": {"num": 1, "mean": t, "std": 0},
                "Progress/kimg": {"num": 1, "mean": float(kimg), "std": 0},
                "Progress/augment": {"num": 1, "mean": 0.01 * t, "std": 0},
                "Loss/G/loss": {"num": 8, "mean": 1.0 + 0.1 * t, "std": 0.1},
                "Loss/D/loss": {"num": 8, "mean": 1.2 - 0.05 * t, "std": 0.1},
                "Loss/r1_penalty": {"num": 8, "mean": 0.1, "std": 0.0},
                "Loss/signs/real": {"num": 8, "mean": 0.5 + 0.02 * t, "std": 0.1},
                "timestamp": 100.0 + t,
            }
        )
    jsonl(run / "stats.jsonl", ticks)
    with (run / "stats.jsonl").open("a") as f:
        f.write('{"Progress/kimg": {"mean": 9')  # a torn last line from a killed run
    for k in KIMGS:
        (run / f"fakes-{k:06d}.png").write_bytes(
            encode_png(rng.integers(0, 256, (1, 32, 32), dtype=np.uint8))
        )
    (run / "reals.png").write_bytes(encode_png(np.zeros((1, 32, 32), np.uint8)))
    torch.manual_seed(0)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 0))
    for k in KIMGS:
        save_snapshot(
            run / f"network-snapshot-{k:06d}.safetensors", G=G, D=None, G_ema=G, state={"kimg": k}
        )
    if with_metrics:
        jsonl(
            run / "metric-fid2k_full.jsonl",
            metric_records("fid2k_full", [{"fid2k_full": v} for v in FID], 2000, True),
        )
        jsonl(
            run / "metric-kid2k_full.jsonl",
            metric_records(
                "kid2k_full", [{"kid2k_full": v, "kid2k_full_std": 0.001} for v in KID], 2000, True
            ),
        )
        jsonl(
            run / "metric-pr2k3_full.jsonl",
            metric_records(
                "pr2k3_full",
                [
                    {"pr2k3_full_precision": p, "pr2k3_full_recall": r}
                    for p, r in zip(PRECISION, RECALL, strict=True)
                ],
                2000,
                False,
            ),
        )
        jsonl(
            run / "metric-intensity_hist.jsonl",
            [
                {
                    "metric": "intensity_hist",
                    "snapshot": f"network-snapshot-{k:06d}.safetensors",
                    "kimg": k,
                    "results": {"intensity_hist_l1": 1.0 / (k + 1), "body_area_diff": 0.1},
                    "num_gen": 64,
                    "num_real": 6,
                    "detector": None,
                    "reference_exact": True,
                    "timestamp": 1.0,
                }
                for k in KIMGS
            ],
        )
        jsonl(
            run / "metric-frd64.jsonl",
            [
                {
                    "metric": "frd64",
                    "snapshot": "network-snapshot-000008.safetensors",
                    "kimg": 8,
                    "results": {"frd64": 12.5},
                    "num_gen": 64,
                    "num_real": 6,
                    "detector": None,
                    "reference_exact": False,
                    "timestamp": 1.0,
                }
            ],
        )
        q = {"min": 0.2, "p05": 0.3, "median": 0.41, "p95": 0.6, "max": 0.63, "mean": 0.4}
        (run / "memorisation-network-snapshot-000008.json").write_text(
            json.dumps(
                {
                    "metric": "memorisation64",
                    "snapshot": "network-snapshot-000008.safetensors",
                    "kimg": 8,
                    "num_gen": 64,
                    "num_train": 6,
                    "copy_ncc": 0.97,
                    "pixel": {
                        "nearest_ncc": q,
                        "nearest_distance": q,
                        "ratio": q,
                        "histogram": {"bin_edges": [0.0, 0.5, 1.0], "counts": [10, 54]},
                    },
                    "feature": None,
                    "num_flagged": 1,
                    "flagged_fraction": 1 / 64,
                    "flagged": [
                        {
                            "gen_index": 3,
                            "seed": 3,
                            "train_index": 2,
                            "train_name": "img0002.png",
                            "ncc": 0.985,
                        }
                    ],
                    "holdout": None,
                    "a_future_key": {"x": [1, 2]},
                }
            )
        )
        (run / "memorisation-network-snapshot-000008.png").write_bytes(
            encode_png(np.zeros((1, 16, 32), np.uint8))
        )
        (run / "memorisation-network-snapshot-000004.json").write_text(
            json.dumps(
                {"snapshot": "network-snapshot-000004.safetensors", "kimg": 4, "num_flagged": 9}
            )
        )
    return run


def referenced_files(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


HOSTILE = "Use `rm -rf` **now** [here](http://evil.example) <script>alert(1)</script>"


def verdict(topic: str, level: str, title: str, text: str = "Plain sentence.") -> dict:
    return {"topic": topic, "level": level, "title": title, "text": text}


def diversity_record(snapshot: str, kimg, verdicts: list[dict], ms_gen: float = 0.62) -> dict:
    return {
        "metric": "diversity64",
        "snapshot": snapshot,
        "kimg": kimg,
        "results": {
            "diversity64_msssim_gen": ms_gen,
            "diversity64_msssim_real": 0.31,
            "diversity64_msssim_ratio": ms_gen / 0.31,
            "diversity64_body_area_std_gen": 0.006,
            "diversity64_body_area_std_real": 0.040,
            "diversity64_mean_intensity_std_gen": 2.5,
            "diversity64_mean_intensity_std_real": 9.0,
            "diversity64_coverage": 0.2,
        },
        "num_gen": 64,
        "num_real": 6,
        "detector": None,
        "reference_exact": False,
        "timestamp": 5.0,
        "verdicts": verdicts,
    }


def audit_record(snapshot: str, kimg, verdicts: list[dict], names: list[str]) -> dict:
    """A memorisation summary in D's schema: every generated image has a record."""
    images = [
        {
            "gen_index": i,
            "gen_name": name,
            "seed": None,
            "train_index": i % 3,
            "train_name": f"img{i % 3:04d}.png",
            "patient_key": f"P{i % 2}",
            "distance": 0.05 * (i + 1),
            "percentile": 2.0 * i,
            "flagged": i == 0,
        }
        for i, name in enumerate(names)
    ]
    return {
        "metric": "memorisation64",
        "snapshot": snapshot,
        "kimg": kimg,
        "num_gen": len(names),
        "num_train": 6,
        "copy_test": {"statistic": "Z_U", "value": -4.2, "p_value": 1e-5, "num_flagged": 1},
        "images": images,
        "verdicts": verdicts,
        "picture": f"memorisation-{snapshot}.png",
    }


def pairs_picture(rows: int, w: int = 16) -> np.ndarray:
    """The runner's closest-pairs picture geometry: rows of 3 tiles, 2-pixel separators."""
    pic = np.full((1, rows * (w + 2) - 2, 3 * w + 4), 255, np.uint8)
    for r in range(rows):
        for c in range(3):
            y, x = r * (w + 2), c * (w + 2)
            pic[0, y : y + w, x : x + w] = 40 * c + 10 * r
    return pic


def evaluation_folder(root: Path) -> Path:
    """What `mrisynth metrics --images gen --data train.zip -o OUT` writes: kimg null."""
    out = root / "eval-gen"
    out.mkdir()
    copy = verdict("copying", "ok", "No sign of data-copying", "Z_U 0.3 (p 0.6).")
    div = verdict("diversity", "warning", "Mode collapse", "Generated MS-SSIM 0.62 vs 0.31.")
    jsonl(out / "metric-diversity64.jsonl", [diversity_record("gen", None, [div])])
    pixfd = {
        "metric": "pixfd64",
        "snapshot": "gen",
        "kimg": None,
        "results": {"pixfd64": 123.4},
        "num_gen": 64,
        "num_real": 6,
        "detector": None,
        "reference_exact": False,
        "timestamp": 5.0,
        "caveats": ["pixfd is standardised by **these** real images", 7],
    }
    jsonl(out / "metric-pixfd64.jsonl", [pixfd])
    names = [f"gen_{i:03d}.png" for i in range(4)]
    (out / "memorisation-gen.json").write_text(json.dumps(audit_record("gen", None, [copy], names)))
    (out / "memorisation-gen.png").write_bytes(encode_png(pairs_picture(4)))
    return out


class PageText(__import__("html.parser").parser.HTMLParser):
    """Text nodes and attribute values of a page, and the order of its top-level blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.texts += [v for _, v in attrs if v]

    def handle_data(self, data):
        self.texts.append(data)


def parse_page(page: str) -> PageText:
    p = PageText()
    p.feed(page)
    return p


def no_markdown(page: str) -> None:
    parsed = parse_page(page)
    text = "\n".join(parsed.texts)
    assert "`" not in text and "**" not in text, text
    assert not re.search(r"\[[^\]\n]*\]\([^)\n]*\)", text), text
    assert not any(tag == "script" for tag, _ in parsed.tags)
