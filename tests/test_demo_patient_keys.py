"""The demo's data is the same in every new folder: fixed patient keys, so the same holdout."""

from __future__ import annotations

from mrisynth.cli.demo import QUICK, _fixed_patient_keys
from mrisynth.data.archive import ImageArchive
from mrisynth.data.pack import pack_archive
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions


def demo_data(out, secret: bool) -> tuple[str, str]:
    write_phantom_tree(out / "phantom", 4, seed=0, matrix_sizes=QUICK.matrix_sizes,
                       num_slices=QUICK.slices, t2spir=False)  # fmt: skip
    opts = PrepareOptions(
        slice=SliceOptions(size=QUICK.resolution),
        secret_file=_fixed_patient_keys(out) if secret else None,
    )
    prepare([out / "phantom"], out / "prepared", opts)
    pack_archive(out / "prepared", out / "data.zip", holdout_patients="2")
    return (
        ImageArchive(out / "data.zip").content_hash(),
        ImageArchive(out / "data-holdout.zip").content_hash(),
    )


def test_two_new_demo_folders_train_on_the_same_patients(tmp_path):
    first = demo_data(tmp_path / "a", secret=True)
    assert demo_data(tmp_path / "b", secret=True) == first
    assert (tmp_path / "a" / ".mrisynth-demo-patient-key").read_text().strip()
    # prepare's own per-folder secret is random: names and hashes differ between folders
    assert demo_data(tmp_path / "c", secret=False) != first
