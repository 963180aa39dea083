"""Sample data for a first try: a synthetic whole-body CT and a synthetic hand MR in Slicer's Sample Data module.

Nothing is downloaded: on first use each volume is made by the project's synthetic generator (about a second) and
kept in Slicer's cache folder, then loaded from there.
"""

from pathlib import Path

import slicer
from slicer.i18n import tr as _

CATEGORY = "Landmark Detector"
SAMPLE_SEED = 606_060
"""Dataset seed of the sample volumes (not a seed the bundled models were trained or evaluated on)."""
SAMPLES = {"LandmarkDetectorSyntheticCT": "body", "LandmarkDetectorSyntheticHandMR": "hand"}
"""Sample name (also the volume node's name) -> synthetic anatomy."""


def registerSampleData() -> None:
    """Add the samples to the Sample Data module (called once Slicer has started)."""
    import SampleData

    icon = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "LandmarkDetector.png"
    for sampleName, anatomy in SAMPLES.items():
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=CATEGORY, sampleName=sampleName, nodeNames=sampleName, thumbnailFileName=str(icon),
            customDownloader=lambda source, name=sampleName, anatomy=anatomy: loadSample(name, anatomy))


def sampleFile(anatomy: str) -> Path:
    """The sample volume of ``anatomy`` ("body" or "hand") in Slicer's cache, synthesized there on first use."""
    from LandmarkDetectorLib.synthetic.dataset import synthesize_case  # at first use: Slicer starts without it
    from LandmarkDetectorLib.volume_io import write_volume

    path = Path(slicer.app.cachePath) / "LandmarkDetector" / f"synthetic-{anatomy}-{SAMPLE_SEED}.nrrd"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        case = synthesize_case(anatomy, SAMPLE_SEED, 0)
        write_volume(path, case.voxels_kji, case.ijk_to_ras, overwrite=True)
    return path


def loadSample(name: str, anatomy: str):
    """Load the sample volume of ``anatomy`` as node ``name`` (making its file first if needed)."""
    with slicer.util.tryWithErrorDisplay(_("Could not make the synthetic sample volume."), waitCursor=True):
        return slicer.util.loadVolume(str(sampleFile(anatomy)), {"name": name})
