"""Paired generation: split a 2-channel generator's output into an image and a label map, and
write the label map as PNG and as a DICOM SEG (highdicom) that references the synthetic image.

The mask channel is decoded by the nearest label level (`mrisynth.data.masks.decode_mask`), the
same code the paired archive was encoded with. The SEG is marked synthetic like the image
(SyntheticData YES, descriptions saying so) and its UIDs and dates are fixed by the model and
seed, so a re-run writes the same bytes.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from mrisynth import __version__, untrusted
from mrisynth.data.masks import (
    CHAOS_LABELS,
    ORGAN_CODES,
    MaskSpec,
    decode_mask,
    mask_levels,
    mask_spec,
    spec_from_record,
)
from mrisynth.errors import InputError, MissingDependencyError

logger = logging.getLogger(__name__)

FIXED_DATE, FIXED_TIME = "20000101", "000000"  # no clock in outputs: re-runs are identical


def mask_name(seed: int) -> str:
    return f"seed{seed:06d}-mask.png"


def seg_name(seed: int) -> str:
    return f"seed{seed:06d}-seg.dcm"


def split_paired(img: np.ndarray, spec: MaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [2, H, W] -> (image uint8 [1, H, W], labels uint8 [H, W] in 0..K-1)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[0] != 2:
        raise ValueError(f"a paired image is uint8 [2, H, W], got {img.dtype} {img.shape}")
    return img[:1], decode_mask(img[1], spec.num_labels)


def generator_mask_spec(run_dir: Path | None, img_channels: int) -> MaskSpec | None:
    """The mask spec of a paired generator: its training archive's (from the run's
    training_options.json) when that archive is still there, else CHAOS's five labels."""
    if img_channels != 2:
        return None
    recorded = _recorded_spec(run_dir)
    if recorded is not None:
        return recorded
    data = _training_data(run_dir)
    if data is not None:
        from mrisynth.data.archive import ImageArchive

        try:
            arc = ImageArchive(data)
            spec = mask_spec(arc)
            arc.close()
        except InputError as e:
            logger.warning("%s; decoding masks with the CHAOS labels", e)
        else:
            if spec is not None:
                return spec
    logger.warning("2-channel generator without its paired training archive; decoding the mask "
                   "channel with the CHAOS labels (background, liver, kidneys, spleen)")
    return MaskSpec(tuple(CHAOS_LABELS.labels))


def _recorded_spec(run_dir: Path | None) -> MaskSpec | None:
    """The mask labels training recorded (training_options.json `mask_labels`), which hold
    even when the archive has moved or its relative path means nothing from here."""
    path = None if run_dir is None else Path(run_dir) / "training_options.json"
    if path is None or not path.is_file():
        return None
    try:
        obj = untrusted.loads(path.read_text(encoding="utf-8"), str(path))
        names = obj.get("mask_labels") if isinstance(obj, dict) else None
        if names is None:  # a run from before the labels were recorded
            return None
        if not isinstance(names, list):
            raise InputError(f"{path}: mask_labels is not a list")
        return spec_from_record({"labels": names, "levels": mask_levels(max(len(names), 2))},
                                f"{path}: mask_labels")
    except (OSError, UnicodeDecodeError, untrusted.BadValue, InputError) as e:
        logger.warning("%s; ignoring the run's recorded mask_labels", str(e)[:200])
        return None


def _training_data(run_dir: Path | None) -> Path | None:
    from mrisynth.training.run_record import find_recorded_data, recorded_options

    if run_dir is None:
        return None
    try:
        return find_recorded_data(recorded_options(Path(run_dir)), Path(run_dir))
    except InputError:  # an unreadable record: decode by CHAOS's labels (caller warns)
        return None


def masks_written(record: dict) -> str:
    """' and N masks (png label maps + DICOM SEG)' for a paired model's generation record
    (one mask per image in each format written), '' for an image-only model."""
    if not record.get("mask"):
        return ""
    kinds = {"png": "png label maps", "dicom": "DICOM SEG"}
    what = " + ".join(kinds[f] for f in record["formats"] if f in kinds)
    return f" and {record['num_images']} masks ({what})" if what else ""


def _segment_descriptions(spec: MaskSpec):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="mrisynth StyleGAN2-ADA (synthetic)", version=__version__,
        family=codes.DCM.ArtificialIntelligence,
    )
    out = []
    for number, name in enumerate(spec.labels[1:], start=1):
        code = ORGAN_CODES.get(name)
        prop = (hd.sr.CodedConcept(code[0], "SCT", code[1]) if code
                else hd.sr.CodedConcept("91772007", "SCT", "Organ"))
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=codes.SCT.Organ, segmented_property_type=prop,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        ))
    return out


def require_seg_writer() -> None:
    """MissingDependencyError (what to install) when highdicom, an optional extra, is absent."""
    import importlib.util

    if importlib.util.find_spec("highdicom") is None:
        raise MissingDependencyError(
            "--format dicom on a paired model writes a DICOM SEG, which needs highdicom: "
            "pip install 'mrisynth[dicom-seg]'"
        )


def seg_dataset(image: Dataset, labels: np.ndarray, spec: MaskSpec, seed: int) -> Dataset:
    """DICOM SEG (binary, one segment per organ) of `labels` [H, W] on the synthetic `image`."""
    require_seg_writer()
    import highdicom as hd

    image = pydicom.dcmread(io.BytesIO(_bytes(image)))  # as a reader would see it
    entropy = ["mrisynth-seg", str(image.SOPInstanceUID)]
    seg = hd.seg.Segmentation(
        source_images=[image],
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(spec),
        series_instance_uid=pydicom.uid.generate_uid(entropy_srcs=[*entropy[:1],
                                                                   image.SeriesInstanceUID]),
        series_number=int(image.SeriesNumber) + 1,
        sop_instance_uid=pydicom.uid.generate_uid(entropy_srcs=entropy),
        instance_number=int(image.InstanceNumber),
        manufacturer="mrisynth",
        manufacturer_model_name="StyleGAN2-ADA paired image + mask",
        software_versions=__version__,
        device_serial_number="none",
        content_description=f"SYNTHETIC mask seed {seed}"[:64],
        content_label="SYNTHETIC",
        omit_empty_frames=False,
    )
    seg.SyntheticData = "YES"
    seg.SeriesDescription = f"SYNTHETIC masks {image.SeriesDescription}"[:64]
    _without_clock(seg, pydicom.uid.generate_uid(entropy_srcs=[*entropy, "dimensions"]))
    return seg


def _without_clock(seg: Dataset, dimension_uid: str) -> None:
    """Replace what highdicom fills from the clock or at random (dates, the dimension
    organisation UID), so the same model and seed give the same bytes."""
    seg.ContentDate, seg.ContentTime = FIXED_DATE, FIXED_TIME
    for kw in ("InstanceCreationDate", "InstanceCreationTime", "SeriesDate", "SeriesTime"):
        if kw in seg:
            delattr(seg, kw)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = FIXED_DATE + FIXED_TIME
    for seq in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(seq, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = dimension_uid


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def seg_bytes(seg: Dataset) -> bytes:
    return _bytes(seg)
