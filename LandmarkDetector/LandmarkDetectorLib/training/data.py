"""Training samples: synthetic renders generated on the fly, and projections of annotated volumes.

Both paths end in the same place as detection: a ProjectedImage of the scanned field of view, framed onto the
network canvas by ``framing.frame``, with landmark targets in canvas pixels, normalized depth and in-view flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import InputError
from ..framing import Canvas, CanvasSpec, canvas_origin_uv, frame
from ..markups import PointList
from ..projection import VIEW_AXES_RAS, ProjectedImage, view_pixel_to_ras
from ..symmetry import mirror_partners
from ..synthetic.anatomy import BODY_LANDMARKS, HAND_LANDMARKS, Anatomy
from ..synthetic.body import build_body, sample_body, sample_pose
from ..synthetic.hand import build_hand, sample_hand
from ..synthetic.render import render_batch


@dataclass(frozen=True)
class Batch:
    """Network inputs and targets.

    Attributes:
        inputs: (B, 3, H, W) float32 canvases (Canvas.network_input).
        uv: (B, N, 2) float32 landmark canvas pixels (u, v).
        depth: (B, N) float32 normalized landmark depth.
        in_view: (B, N) bool, landmark inside the scanned field of view.
        known: (B, N) bool, the annotation exists (fine-tuning data may miss landmarks).
        located: (B, N) bool, the landmark's position is known (synthetic: always, also out of view).
        depth_std_mm: (B,) float32, the depth normalization scale of each canvas (normalized -> mm).
    """

    inputs: NDArray[np.float32]
    uv: NDArray[np.float32]
    depth: NDArray[np.float32]
    in_view: NDArray[np.bool_]
    known: NDArray[np.bool_]
    located: NDArray[np.bool_]
    depth_std_mm: NDArray[np.float32]

    @staticmethod
    def stack(samples: list[Batch]) -> Batch:
        return Batch(*(np.concatenate([getattr(s, f) for s in samples]) for f in
                       ("inputs", "uv", "depth", "in_view", "known", "located", "depth_std_mm")))


def targets(canvas: Canvas, points_ras: NDArray[np.float64], in_view: NDArray[np.bool_],
            known: NDArray[np.bool_] | None = None) -> Batch:
    """A one-sample Batch from a framed canvas and the landmarks' RAS positions (NaN rows where unknown)."""
    uvd = canvas.image.ras_to_uvd(np.nan_to_num(points_ras))
    located = np.isfinite(points_ras).all(axis=1)
    known = located if known is None else known
    return Batch(inputs=canvas.network_input()[None], uv=uvd[None, :, :2].astype(np.float32),
                 depth=canvas.image.normalize_depth(uvd[:, 2])[None].astype(np.float32),
                 in_view=(in_view & known)[None], known=known[None], located=(located & known)[None],
                 depth_std_mm=np.array([canvas.image.depth_std_mm], dtype=np.float32))


# --- synthetic data -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of what real scans do to a rendered silhouette.

    Attributes:
        fov_cut: probability that the scan stops short of the body along S (head or feet missing, trunk only).
        transverse_fov_mm: range of the scanner's transverse field of view (R extent), mm; None: never cut.
        table_remnant: probability of thin lines along S left by the table's side walls.
        holes: probability of a few small holes punched into the silhouette.
        blobs: probability of a few small foreign objects (tubes, cables, blankets) beside or on the body.
        edge_noise: probability of a one-pixel erosion or dilation of the silhouette.
        depth_noise_mm: standard deviation of noise added to the depth, mm.
        tilt_deg: the body is rotated in the coronal plane by up to this angle.
        frame_jitter_px: random shift of the canvas, pixels.
        mirror: probability that a whole-body image is flipped left-right with its paired landmarks swapped (a
            mirrored body is a plausible body; teaches that the side of a hand, not its place, tells right from left).
        warp_mm: standard deviation of a smooth random in-plane displacement of the image, its landmarks moved with
            it (control points every WARP_SPACING_MM; 0: none): body outlines that the synthetic bodies lack.
    """

    fov_cut: float = 0.5
    transverse_fov_mm: tuple[float, float] | None = (450.0, 650.0)
    table_remnant: float = 0.2
    holes: float = 0.25
    blobs: float = 0.25
    edge_noise: float = 0.3
    depth_noise_mm: float = 1.5
    tilt_deg: float = 5.0
    frame_jitter_px: float = 1.5
    mirror: float = 0.0
    warp_mm: float = 0.0


WARP_SPACING_MM = 80.0
"""Distance between the control points of ``Augmentation.warp_mm``'s displacement (cubic between them)."""

NO_AUGMENTATION = Augmentation(fov_cut=0.0, transverse_fov_mm=None, table_remnant=0.0, holes=0.0, blobs=0.0,
                               edge_noise=0.0, depth_noise_mm=0.0, tilt_deg=0.0, frame_jitter_px=0.0, mirror=0.0)


@dataclass(frozen=True)
class AnatomyKind:
    """What differs between bodies and hands for training."""

    name: str
    landmarks: tuple[str, ...]
    sample: Callable[[np.random.Generator], Anatomy]
    render_extent_mm: tuple[float, float]  # (width, height) of the region rendered around the anatomy


def _sample_body(rng: np.random.Generator) -> Anatomy:
    return build_body(sample_body(rng), sample_pose(rng), inner=False)


def _sample_hand(rng: np.random.Generator) -> Anatomy:
    return build_hand(sample_hand(rng))


KINDS = {
    "body": AnatomyKind("body", BODY_LANDMARKS, _sample_body, (1300.0, 2700.0)),
    "hand": AnatomyKind("hand", HAND_LANDMARKS, _sample_hand, (300.0, 420.0)),
}


def _tilt_matrix(low: NDArray[np.float64], high: NDArray[np.float64], degrees: float) -> NDArray[np.float64]:
    """4x4 RAS rotation in the coronal plane (about the A axis) around the centre of the box (low, high)."""
    centre = (low + high) / 2
    t = np.radians(degrees)
    m = np.eye(4)
    m[[0, 0, 2, 2], [0, 2, 0, 2]] = [np.cos(t), -np.sin(t), np.sin(t), np.cos(t)]
    m[:3, 3] = centre - m[:3, :3] @ centre
    return m


def _field_of_view(low: NDArray[np.float64], high: NDArray[np.float64], landmarks: dict[str, NDArray[np.float64]],
                   kind: str, aug: Augmentation, rng: np.random.Generator
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A random scanned box (low, high) in RAS mm: margins around the anatomy's box, sometimes cutting it."""
    low = low - rng.uniform(5.0, 60.0, 3)
    high = high + rng.uniform(5.0, 60.0, 3)
    if rng.random() < aug.fov_cut:
        if kind == "body":
            head, knee, toe = landmarks["HeadTop"][2], (landmarks["KneeR"][2] + landmarks["KneeL"][2]) / 2, \
                min(landmarks["BigToeR"][2], landmarks["BigToeL"][2])
            shoulder = (landmarks["ShoulderR"][2] + landmarks["ShoulderL"][2]) / 2
            choice = rng.choice(["no_head", "no_feet", "trunk", "from_shoulders"], p=[0.25, 0.35, 0.25, 0.15])
            if choice in ("no_head", "trunk"):
                high[2] = rng.uniform(shoulder - 50.0, head - 20.0)
            if choice in ("no_feet", "trunk"):
                low[2] = rng.uniform(toe + 20.0, knee + 350.0)
            if choice == "from_shoulders":
                high[2] = rng.uniform(shoulder + 60.0, shoulder + 160.0)
        else:
            side = rng.integers(0, 4)
            axis, upper = (0, 2)[side // 2], side % 2 == 1
            span = high[axis] - low[axis]
            if upper:
                high[axis] -= rng.uniform(0.05, 0.25) * span
            else:
                low[axis] += rng.uniform(0.05, 0.25) * span
    if kind == "body" and aug.transverse_fov_mm is not None:
        half = rng.uniform(*aug.transverse_fov_mm) / 2
        centre = (low[0] + high[0]) / 2 + rng.normal(0.0, 15.0)
        low[0], high[0] = max(low[0], centre - half), min(high[0], centre + half)
    return low, high


def _crop_to_field(depth: NDArray[np.float32], pixel_to_ras: NDArray[np.float64], low: NDArray[np.float64],
                   high: NDArray[np.float64]) -> ProjectedImage:
    """The part of a rendered AP image whose rays lie inside the box, as the projection of that box would be."""
    h, w = depth.shape
    corners = np.array([[0.0, 0.0, 0.0], [w - 1.0, h - 1.0, 0.0]])
    ras = corners @ pixel_to_ras[:3, :3].T + pixel_to_ras[:3, 3]
    # AP view: u runs along -R, v along -S.
    su, sv = np.linalg.norm(pixel_to_ras[:3, 0]), np.linalg.norm(pixel_to_ras[:3, 1])
    u0 = int(np.clip(np.ceil((ras[0, 0] - high[0]) / su), 0, w - 1))
    u1 = int(np.clip(np.floor((ras[0, 0] - low[0]) / su), u0, w - 1))
    v0 = int(np.clip(np.ceil((ras[0, 2] - high[2]) / sv), 0, h - 1))
    v1 = int(np.clip(np.floor((ras[0, 2] - low[2]) / sv), v0, h - 1))
    crop = depth[v0:v1 + 1, u0:u1 + 1]
    shifted = pixel_to_ras.copy()
    shifted[:3, 3] = pixel_to_ras[:3, :3] @ np.array([u0, v0, 0.0]) + pixel_to_ras[:3, 3]
    silhouette = np.isfinite(crop)
    return ProjectedImage(silhouette=silhouette, depth_mm=np.where(silhouette, crop, np.nan).astype(np.float32),
                          pixel_to_ras=shifted, threshold=float("nan"), view="ap")


def _disks(shape: tuple[int, int], count: int, radius_px: tuple[float, float], rng: np.random.Generator,
           near: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
    """A mask of ``count`` random disks, centred on ``near`` pixels when given."""
    mask = np.zeros(shape, dtype=bool)
    vv, uu = np.mgrid[0:shape[0], 0:shape[1]]
    candidates = np.argwhere(near) if near is not None and near.any() else None
    for _ in range(count):
        if candidates is not None:
            cv, cu = candidates[rng.integers(len(candidates))]
        else:
            cv, cu = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(*radius_px)
        mask |= (vv - cv) ** 2 + (uu - cu) ** 2 <= r * r
    return mask


def _augment(image: ProjectedImage, aug: Augmentation, rng: np.random.Generator) -> ProjectedImage:
    """Silhouette and depth corruptions that real scans show."""
    body = image.silhouette.copy()
    depth = image.depth_mm.astype(np.float64).copy()
    if not body.any():
        return image
    body_depth = depth[body]
    near, far = body_depth.min(), body_depth.max()
    if rng.random() < aug.edge_noise:
        body = ndimage.binary_dilation(body) if rng.random() < 0.5 else ndimage.binary_erosion(body)
        depth = np.where(body & ~np.isfinite(depth), ndimage.grey_dilation(np.nan_to_num(depth, nan=-1e9), 3), depth)
    if rng.random() < aug.holes:
        body &= ~_disks(body.shape, int(rng.integers(1, 5)), (0.6, 2.0), rng, near=body)
    if rng.random() < aug.blobs:
        surroundings = ndimage.binary_dilation(body, iterations=6)
        blobs = _disks(body.shape, int(rng.integers(1, 4)), (0.7, 3.0), rng, near=surroundings)
        depth = np.where(blobs & ~body, rng.uniform(near, far), depth)
        body |= blobs
    if rng.random() < aug.table_remnant:
        cols = np.flatnonzero(body.any(axis=0))
        for _ in range(int(rng.integers(1, 3))):
            u = int(np.clip(rng.choice([cols[0], cols[-1]]) + rng.integers(-8, 9), 0, body.shape[1] - 1))
            line = np.zeros_like(body)
            line[:, u] = rng.random(body.shape[0]) < rng.uniform(0.5, 1.0)
            depth = np.where(line & ~body, far + rng.uniform(0.0, 30.0), depth)
            body |= line
    if aug.depth_noise_mm > 0:
        depth = depth + rng.normal(0.0, aug.depth_noise_mm, depth.shape)
    return ProjectedImage(silhouette=body, depth_mm=np.where(body, depth, np.nan).astype(np.float32),
                          pixel_to_ras=image.pixel_to_ras, threshold=image.threshold, view=image.view)


def _warped(image: ProjectedImage, points_ras: NDArray[np.float64], sd_mm: float, rng: np.random.Generator
            ) -> tuple[ProjectedImage, NDArray[np.float64]]:
    """The image (square pixels) resampled through a smooth random displacement (pixel x shows what lay at
    x + d(x)), with the landmarks moved to where their content went (x + d(x) = the old position, solved by
    fixed-point iteration) at their own depth."""
    pixel_mm = image.pixel_spacing_mm[0]
    step = WARP_SPACING_MM / pixel_mm  # control points this many pixels apart
    h, w = image.shape
    coarse = rng.normal(0.0, sd_mm / pixel_mm, (2, int(h / step) + 2, int(w / step) + 2))  # (dv, du) pixels

    def displacement(v: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.float64]:
        """(2, ...) displacement (dv, du) in pixels at pixel positions (v, u)."""
        return np.stack([ndimage.map_coordinates(c, [v / step, u / step], order=3, mode="nearest") for c in coarse])

    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    dv, du = displacement(vv, uu)
    source = [vv + dv, uu + du]
    body = ndimage.map_coordinates(image.silhouette.astype(np.float32), source, order=0, mode="constant") > 0.5
    depth = ndimage.map_coordinates(np.nan_to_num(image.depth_mm, nan=0.0), source, order=0, mode="nearest")
    uvd = image.ras_to_uvd(points_ras)
    moved = uvd[:, :2].copy()
    for _ in range(10):
        dv, du = displacement(moved[:, 1], moved[:, 0])
        moved = uvd[:, :2] - np.column_stack([du, dv])
    warped = ProjectedImage(silhouette=body, depth_mm=np.where(body, depth, np.nan).astype(np.float32),
                            pixel_to_ras=image.pixel_to_ras, threshold=image.threshold, view=image.view)
    return warped, image.uvd_to_ras(np.column_stack([moved, uvd[:, 2]]))


def _mirrored(image: ProjectedImage, points_ras: NDArray[np.float64], in_view: NDArray[np.bool_],
              partners: NDArray[np.intp]) -> tuple[ProjectedImage, NDArray[np.float64], NDArray[np.bool_]]:
    """The image flipped left-right on its own grid, with the landmarks mirrored and paired labels swapped."""
    uvd = image.ras_to_uvd(points_ras)
    uvd[:, 0] = (image.shape[1] - 1) - uvd[:, 0]
    flipped = ProjectedImage(silhouette=image.silhouette[:, ::-1].copy(), depth_mm=image.depth_mm[:, ::-1].copy(),
                             pixel_to_ras=image.pixel_to_ras, threshold=image.threshold, view=image.view)
    return flipped, image.uvd_to_ras(uvd)[partners], in_view[partners]


class SyntheticSource:
    """Endless synthetic training batches, rendered on the fly (no files).

    Args:
        kind: "body" or "hand".
        spec: network canvas.
        augmentation: what to simulate of real scans.
        anny_fraction: share of bodies or hands drawn from the anny body model (``synthetic.anny_body``,
            ``synthetic.anny_hand``; needs the ``anny`` package) rather than the primitive generator.
        primitive_unknown: landmarks whose primitive-body positions are not trusted (joint centres whose rules were
            never calibrated on real anatomy): unknown in primitive samples, so that only the anny bodies teach them.
    """

    def __init__(self, kind: str, spec: CanvasSpec, augmentation: Augmentation = Augmentation(),
                 anny_fraction: float = 0.0, primitive_unknown: tuple[str, ...] = ()):
        if not 0.0 <= anny_fraction <= 1.0:
            raise InputError(f"anny_fraction must be in [0, 1], got {anny_fraction}.")
        self.kind = KINDS[kind]
        self.spec = spec
        self.augmentation = augmentation
        self.anny_fraction = anny_fraction
        self.partners = mirror_partners(self.kind.landmarks)
        unknown = set(primitive_unknown) - set(self.kind.landmarks)
        if unknown:
            raise InputError(f"primitive_unknown names landmarks {sorted(unknown)} that {kind} does not have.")
        self.primitive_known = np.array([name not in primitive_unknown for name in self.kind.landmarks])
        w_mm, h_mm = self.kind.render_extent_mm
        self.shape_vu = (int(h_mm / spec.pixel_spacing_mm) + 1, int(w_mm / spec.pixel_spacing_mm) + 1)

    def batch(self, size: int, rng: np.random.Generator) -> Batch:
        """``size`` random samples."""
        from_anny = int(rng.binomial(size, self.anny_fraction)) if self.anny_fraction > 0 else 0
        renders = [(*r, self.primitive_known) for r in self._primitive_renders(size - from_anny, rng)]
        if from_anny:
            renders += [(*r, None) for r in self._anny_renders(from_anny, rng)]
        return Batch.stack([self._sample(*render, rng) for render in renders])

    def _primitive_renders(self, size: int, rng: np.random.Generator) -> list[tuple]:
        """(depth, grid, box low, box high, landmarks) of ``size`` primitive anatomies."""
        aug = self.augmentation
        anatomies = [self.kind.sample(rng) for _ in range(size)]
        if aug.tilt_deg > 0:
            anatomies = [a.transformed(_tilt_matrix(*a.skin.bounds_ras(), rng.uniform(-aug.tilt_deg, aug.tilt_deg)))
                         for a in anatomies]
        boxes = [a.skin.bounds_ras() for a in anatomies]
        grids = np.stack([self._grid(low, high) for low, high in boxes]) if anatomies else np.zeros((0, 4, 4))
        depths = np.empty((size, *self.shape_vu), dtype=np.float32)
        by_count: dict[int, list[int]] = {}
        for index, anatomy in enumerate(anatomies):
            by_count.setdefault(len(anatomy.skin), []).append(index)
        for indices in by_count.values():  # render_batch needs equal primitive counts
            depths[indices] = render_batch([anatomies[i].skin for i in indices], grids[indices], self.shape_vu)
        return [(depth, grid, low, high, anatomy.landmarks_ras)
                for depth, grid, (low, high), anatomy in zip(depths, grids, boxes, anatomies, strict=True)]

    def _anny_renders(self, size: int, rng: np.random.Generator) -> list[tuple]:
        """(depth, grid, box low, box high, landmarks) of ``size`` bodies or hands of the anny body model."""
        from ..synthetic.mesh import render_mesh_batch

        if self.kind.name == "hand":
            from ..synthetic.anny_hand import sample_anny_hands

            meshes = sample_anny_hands(rng, size)
        else:
            from ..synthetic.anny_body import sample_anny_bodies

            meshes = sample_anny_bodies(rng, size)
        vertices, points = meshes.vertices_ras.astype(np.float64), meshes.landmarks_ras.astype(np.float64)
        if self.augmentation.tilt_deg > 0:
            for b in range(size):
                m = _tilt_matrix(vertices[b].min(axis=0), vertices[b].max(axis=0),
                                 rng.uniform(-self.augmentation.tilt_deg, self.augmentation.tilt_deg))
                vertices[b] = vertices[b] @ m[:3, :3].T + m[:3, 3]
                points[b] = points[b] @ m[:3, :3].T + m[:3, 3]
        lows, highs = vertices.min(axis=1), vertices.max(axis=1)
        grids = np.stack([self._grid(low, high) for low, high in zip(lows, highs, strict=True)])
        depths = render_mesh_batch(vertices, meshes.faces, grids, self.shape_vu)
        names = self.kind.landmarks
        return [(depth, grid, low, high, dict(zip(names, p, strict=True)))
                for depth, grid, low, high, p in zip(depths, grids, lows, highs, points, strict=True)]

    def _sample(self, depth: NDArray[np.float32], grid: NDArray[np.float64], low: NDArray[np.float64],
                high: NDArray[np.float64], landmarks: dict[str, NDArray[np.float64]],
                known: NDArray[np.bool_] | None, rng: np.random.Generator) -> Batch:
        """One training sample from a render: field of view, mirror, corruptions, framing, targets (``known``: which
        landmarks to teach; None: all)."""
        aug = self.augmentation
        field_low, field_high = _field_of_view(low, high, landmarks, self.kind.name, aug, rng)
        image = _crop_to_field(depth, grid, field_low, field_high)
        points = np.array([landmarks[name] for name in self.kind.landmarks], dtype=np.float64)
        in_view = np.all((points >= field_low) & (points <= field_high), axis=1)
        if aug.mirror > 0 and self.partners is not None and rng.random() < aug.mirror:
            image, points, in_view = _mirrored(image, points, in_view, self.partners)
            known = None if known is None else known[self.partners]
        if aug.warp_mm > 0:
            image, points = _warped(image, points, aug.warp_mm, rng)
        image = _augment(image, aug, rng)
        canvas = frame(image, self.spec, origin_uv=self._jittered_origin(image, rng))
        return targets(canvas, points, in_view, known)

    def _grid(self, low: NDArray[np.float64], high: NDArray[np.float64]) -> NDArray[np.float64]:
        """AP grid of canvas-spacing pixels centred on the box (low, high), front plane at its most anterior point."""
        centre = (low + high) / 2
        spacing = self.spec.pixel_spacing_mm
        axes = VIEW_AXES_RAS["ap"]
        origin = (centre - axes[0] * spacing * (self.shape_vu[1] - 1) / 2
                  - axes[1] * spacing * (self.shape_vu[0] - 1) / 2)
        origin[1] = high[1]
        return view_pixel_to_ras("ap", origin, (spacing, spacing))

    def _jittered_origin(self, image: ProjectedImage, rng: np.random.Generator) -> NDArray[np.float64]:
        jitter = self.augmentation.frame_jitter_px
        return canvas_origin_uv(image, self.spec) + rng.uniform(-jitter, jitter, 2)


# --- annotated volumes ----------------------------------------------------------------------------------------

def annotated_sample(canvas: Canvas, points: PointList, names: tuple[str, ...]) -> Batch:
    """One sample from a framed volume and its landmark file; names missing from the file are unknown.

    Undefined points (status "undefined") count as known and not in view: the annotator said "not there".
    """
    positions = np.full((len(names), 3), np.nan)
    known = np.zeros(len(names), dtype=bool)
    for index, name in enumerate(names):
        point = points.get(name)
        if point is not None:
            known[index] = True
            if point.status == "defined":
                positions[index] = point.position_ras
    return targets(canvas, positions, np.isfinite(positions).all(axis=1), known)
