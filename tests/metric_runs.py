"""Tiny inputs of the metric runner tests: a generator, a labelled archive with patient keys,
a run folder with snapshots, and stand-in detectors that count what they see."""

import cv2
import numpy as np
import torch

from mrisynth.config import resolve_preset
from mrisynth.metrics.extractor import standin_detector
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.training.checkpoint import save_snapshot


def tiny_generator(seed=0):
    torch.manual_seed(seed)
    return build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 0)).eval()


def write_archive(folder, num=24, patients=4):
    folder.mkdir(parents=True)
    rows = ["file,patient_key"]
    for i in range(num):
        img = np.zeros([16, 16], np.uint8)
        cv2.ellipse(img, (8, 8), (4 + i % 3, 3 + i % 2), 0, 0, 360, 100 + 5 * i, -1)
        cv2.imwrite(str(folder / f"img{i:03d}.png"), img)
        rows.append(f"img{i:03d}.png,pt{i % patients}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


class CountingDetector(torch.nn.Module):
    """Wraps a stand-in network and counts the images it sees."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, 0

    def forward(self, x, return_features=False):
        self.seen += x.shape[0]
        return self.net(x, return_features=return_features)


def standin_extractors():
    inc = standin_detector("inception", width=1 / 16, resize_to=75)
    inc.net = CountingDetector(inc.net)
    return {
        "standin-inception": inc,
        "standin-vgg16": standin_detector("vgg16", width=1 / 16, resize_to=32),
    }


def runner_setup(root):
    """(root, archive, run folder with snapshots at 0 and 4 kimg, G)."""
    archive = write_archive(root / "archive")
    run = root / "00000-tiny"
    G = tiny_generator()
    for kimg in (0, 4):
        save_snapshot(
            run / f"network-snapshot-{kimg:06d}.safetensors",
            G=G,
            D=None,
            G_ema=G,
            state={"kimg": kimg},
        )
    return root, archive, run, G
