"""mrisynth.data: DICOM reading, `prepare`, the phantom, and training archives."""

from mrisynth.data.archive import ImageArchive
from mrisynth.data.pack import PackResult, pack_archive

__all__ = ["ImageArchive", "PackResult", "pack_archive"]
