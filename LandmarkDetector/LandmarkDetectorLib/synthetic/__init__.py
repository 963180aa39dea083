"""Synthetic anatomy for pretraining: parametric whole bodies and left hands with exact landmarks, rendered as
silhouette + depth images or voxelized into CT-/MR-like volumes (Riegler et al. §2.1)."""
