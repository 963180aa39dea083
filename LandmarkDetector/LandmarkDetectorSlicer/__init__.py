"""The Slicer side of LandmarkDetector: parameter node, logic on MRML nodes, panel and self-test.

Unlike LandmarkDetectorLib, these modules import slicer, qt and vtk. LandmarkDetector.py, the module file, exposes
their classes under the names Slicer looks up (``LandmarkDetectorWidget``, ``LandmarkDetectorLogic``,
``LandmarkDetectorTest``). Imports go one way: parameters <- logic <- widget <- selftest.
"""
