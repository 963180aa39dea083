"""Make the README's figures from the real volumes in ../shared/data and from synthetic anatomy.

Run: ``python scripts/make_figures.py [--shared ../shared] [--out Resources/Screenshots]``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from LandmarkDetectorLib.images import depth_to_uint8  # noqa: E402
from LandmarkDetectorLib.projection import ProjectionConfig, project_volume  # noqa: E402
from LandmarkDetectorLib.volume_io import read_volume  # noqa: E402

REAL_VOLUMES = [
    ("totalseg-example-ct/example_ct.nii.gz", "CT abdomen"),
    ("totalseg-example-mr/example_mr_sm.nii.gz", "MR slab"),
    ("afids-mni152-t1w/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz", "T1 MR head"),
]


def show(ax, image, title: str) -> None:
    """Draw a projection in millimetres (square pixels on screen whatever the pixel spacing)."""
    su, sv = image.pixel_spacing_mm
    h, w = image.shape
    ax.imshow(depth_to_uint8(image), cmap="gray", vmin=0, vmax=255, extent=(0, w * su, h * sv, 0),
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def real_projections(shared: Path, out: Path) -> None:
    """Silhouette-and-depth pictures (AP and LR views) of the real volumes."""
    fig, axes = plt.subplots(1, 2 * len(REAL_VOLUMES), figsize=(13, 3.6), gridspec_kw={"wspace": 0.05})
    for index, (relative, label) in enumerate(REAL_VOLUMES):
        volume = read_volume(shared / "data" / relative)
        for offset, view in enumerate(("ap", "lr")):
            image = project_volume(volume.voxels_kji, volume.ijk_to_ras, ProjectionConfig(view=view))
            show(axes[2 * index + offset], image, f"{label}, {view.upper()}\nthreshold {image.threshold:.0f}")
    fig.suptitle("Real volumes projected: silhouette with surface depth (bright = near); AP = front view, "
                 "LR = side view", fontsize=10)
    fig.savefig(out / "real_projections.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def synthetic_montage(out: Path) -> None:
    """16 synthetic bodies and 16 synthetic hands: silhouettes above, depth images below."""
    from LandmarkDetectorLib.images import silhouette_to_uint8
    from LandmarkDetectorLib.synthetic.body import build_body, sample_body, sample_pose
    from LandmarkDetectorLib.synthetic.hand import build_hand, sample_hand
    from LandmarkDetectorLib.synthetic.render import frame_grid, render

    fig, axes = plt.subplots(4, 16, figsize=(16, 7.0), gridspec_kw={"hspace": 0.04, "wspace": 0.04,
                                                                  "height_ratios": [1.6, 1.6, 0.95, 0.95]})
    for column in range(16):
        rng = np.random.default_rng([2026, column])
        body = build_body(sample_body(rng), sample_pose(rng), inner=False)
        hand = build_hand(sample_hand(rng))
        for row, (anatomy, shape) in enumerate([(body, (160, 76)), (hand, (96, 96))]):
            image = render(anatomy.skin, frame_grid(anatomy.skin, shape), shape)
            axes[2 * row, column].imshow(silhouette_to_uint8(image.silhouette), cmap="gray", vmin=0, vmax=255)
            axes[2 * row + 1, column].imshow(depth_to_uint8(image), cmap="gray", vmin=0, vmax=255)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Synthetic training data: 16 bodies (160 x 76 px, the paper's size) and 16 left hands (96 x 96 px); "
                 "silhouettes and depth images (bright = near)", fontsize=11)
    fig.savefig(out / "synthetic_montage.png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def detect_preview(out: Path) -> None:
    """The bundled wholebody-ct model on the demo's synthetic CT (seed 2026), drawn as `detect --preview` does."""
    from LandmarkDetectorLib import detect_landmarks, load_model
    from LandmarkDetectorLib.pipeline import model_projection
    from LandmarkDetectorLib.preview import draw_landmarks
    from LandmarkDetectorLib.synthetic.dataset import synthesize_case

    model = load_model("wholebody-ct", "cpu")
    scan = synthesize_case("body", 2026, 0)
    landmarks = detect_landmarks(scan.voxels_kji, scan.ijk_to_ras, model, "cpu")
    spec = dataclasses.replace(model.metadata.canvas, pixel_spacing_mm=3.0)
    image = model_projection(scan.voxels_kji, scan.ijk_to_ras, model.metadata.projection, spec)
    draw_landmarks(image, landmarks, out / "detect_preview.png", title="synthetic whole-body CT: wholebody-ct",
                   overwrite=True)


def icon(repo: Path) -> None:
    """The 128 x 128 extension icon: a synthetic body's depth image with its nine landmarks."""
    from LandmarkDetectorLib.synthetic.body import build_body, sample_body, sample_pose
    from LandmarkDetectorLib.synthetic.render import frame_grid, render

    rng = np.random.default_rng(11)
    anatomy = build_body(sample_body(rng, female=False, height_mm=1780.0, bmi=24.0), sample_pose(rng))
    grid = frame_grid(anatomy.skin, (120, 120), margin=0.02)
    image = render(anatomy.skin, grid, (120, 120))
    shade = depth_to_uint8(image).astype(np.float64) / 255
    rgba = np.zeros((128, 128, 4))
    body = np.pad(image.silhouette, 4)
    rgba[..., :3] = np.pad(shade, 4)[..., None] * np.array([0.55, 0.75, 1.0])
    rgba[..., 3] = body
    colours = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(rgba, interpolation="bilinear")
    uvd = image.ras_to_uvd(anatomy.landmark_array())
    ax.scatter(uvd[:, 0] + 4, uvd[:, 1] + 4, s=22, c=[colours(i) for i in range(len(uvd))], edgecolors="white",
               linewidths=0.8, zorder=3)
    ax.set_xlim(-0.5, 127.5)
    ax.set_ylim(127.5, -0.5)
    ax.axis("off")
    icons = repo / "LandmarkDetector" / "Resources" / "Icons"
    for path in (repo / "LandmarkDetector.png", icons / "LandmarkDetector.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, transparent=True)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "Resources" / "Screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    real_projections(args.shared, args.out)
    synthetic_montage(args.out)
    detect_preview(args.out)
    icon(Path(__file__).resolve().parents[1])
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
