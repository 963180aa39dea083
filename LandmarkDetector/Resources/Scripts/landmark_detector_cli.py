"""Run the ``landmark-detector`` command line inside Slicer's Python (Slicer's batch mode).

    Slicer --no-main-window --python-script <module>/Resources/Scripts/landmark_detector_cli.py batch IN --out OUT

Takes the same commands and options as ``landmark-detector`` (``detect``, ``batch``, ``models``, ...) and exits
Slicer with the command's exit code. torch comes from Slicer's PyTorch extension.
"""

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2]  # .../LandmarkDetector, which holds LandmarkDetectorLib
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from LandmarkDetectorLib.cli import main  # noqa: E402

status = main(sys.argv[1:])
try:
    import slicer

    slicer.util.exit(status)
except ImportError:  # run by a plain Python
    sys.exit(status)
