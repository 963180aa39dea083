"""Calibrate the anny body generator's joint-centre rules (SHOULDER_RULE, KNEE_RULE) on the mesh50_XCAT phantom.

The mesh50_XCAT man (176 cm, arms hanging slightly abducted, palms towards the thighs) has reference humeral head
and knee centres (``Resources/RealAnatomy/body/landmarks.csv``). They are turned into relations to his skin, which any
body has: the humeral head centre lies so far below the top of the shoulder skin and medial of the lateral shoulder
skin, at a fraction of the shoulder's depth; the knee centre at a fraction of the stature above the soles and at
fractions of the knee's depth and width. An anny body shaped and posed like him (male, his stature and BMI, the
reference phantoms' pose) gets target points with the same relations to its own skin (measured around the point,
iterated), and ``fit_landmark_rules`` turns the targets into rule offsets. Prints the rules, the residuals, and the
relations over a sample of random anny bodies with the arms down (``Resources/RealAnatomy/body/ANNY_CALIBRATION.md``).

    python scripts/calibrate_anny_landmarks.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import trimesh
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "LandmarkDetector"))

from LandmarkDetectorLib.synthetic import anny_body  # noqa: E402

Mesh = tuple[NDArray[np.float64], NDArray[np.int64]]
"""Vertices (V, 3) RAS mm and triangles (F, 3)."""


def xcat_skin_ras(data: Path) -> tuple[Mesh, float]:
    """The mesh50_XCAT body surface in RAS mm (the STL is LPS mm) and its volume (mm^3)."""
    with zipfile.ZipFile(data / "xcat-mesh50-wholebody" / "mesh50XCAT_WholeBody.zip") as archive:
        mesh = trimesh.load(io.BytesIO(archive.read("WholeBody_Body.stl")), file_type="stl", process=True)
    return (np.asarray(mesh.vertices) * np.array([-1.0, -1.0, 1.0]), np.asarray(mesh.faces)), float(mesh.volume)


def xcat_references() -> dict[str, NDArray[np.float64]]:
    with open(ROOT / "Resources" / "RealAnatomy" / "body" / "landmarks.csv") as f:
        return {row["name"]: np.array([float(row[k]) for k in "RAS"]) for row in csv.DictReader(f)
                if row["subject"] == "xcat_m50"}


def skin_distance(mesh: Mesh, point: NDArray[np.float64], direction: NDArray[np.float64]) -> float:
    """Distance from ``point`` to the nearest skin crossing along ``direction`` (Moller-Trumbore on all triangles)."""
    v, f = mesh
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    e1, e2 = b - a, c - a
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    t_vec = point - a
    u = np.einsum("ij,ij->i", t_vec, p) * inv
    q = np.cross(t_vec, e1)
    w = (direction @ q.T) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)
    return float(t[hit].min())


AXES = np.eye(3)  # R, A, S


def shoulder_relations(mesh: Mesh, point: NDArray[np.float64]) -> dict[str, float]:
    """Depth below the shoulder skin above the point, distance medial of the lateral skin (mm), and the point's
    fraction of the shoulder's depth from the back skin."""
    side = np.sign(point[0])
    front, back = skin_distance(mesh, point, AXES[1]), skin_distance(mesh, point, -AXES[1])
    return {"below_top": skin_distance(mesh, point, AXES[2]),
            "medial_of_lateral": skin_distance(mesh, point, side * AXES[0]),
            "depth_fraction": back / (front + back), "depth": front + back}


def knee_relations(mesh: Mesh, point: NDArray[np.float64]) -> dict[str, float]:
    """Height above the soles as a fraction of stature, the point's fractions of the knee's depth (from the back
    skin) and width (from the medial skin)."""
    side = np.sign(point[0])
    z = mesh[0][:, 2]
    front, back = skin_distance(mesh, point, AXES[1]), skin_distance(mesh, point, -AXES[1])
    lateral, medial = skin_distance(mesh, point, side * AXES[0]), skin_distance(mesh, point, -side * AXES[0])
    return {"height_fraction": (point[2] - z.min()) / np.ptp(z), "depth_fraction": back / (front + back),
            "width_fraction": medial / (medial + lateral), "depth": front + back, "width": medial + lateral}


def target(mesh: Mesh, name: str, point: NDArray[np.float64], ref: dict[str, float]) -> NDArray[np.float64]:
    """The point with the reference's relations to this skin, measured from ``point``."""
    side = np.sign(point[0])
    front, back = skin_distance(mesh, point, AXES[1]), skin_distance(mesh, point, -AXES[1])
    a = point[1] - back + ref["depth_fraction"] * (front + back)
    if name.startswith("Shoulder"):
        top = point[2] + skin_distance(mesh, point, AXES[2])
        lateral = side * point[0] + skin_distance(mesh, point, side * AXES[0])
        return np.array([side * (lateral - ref["medial_of_lateral"]), a, top - ref["below_top"]])
    z = mesh[0][:, 2]
    medial = side * point[0] - skin_distance(mesh, point, -side * AXES[0])
    lateral = side * point[0] + skin_distance(mesh, point, side * AXES[0])
    return np.array([side * (medial + ref["width_fraction"] * (lateral - medial)), a,
                     z.min() + ref["height_fraction"] * np.ptp(z)])


def stature_and_bmi(skin: Mesh, volume_mm3: float) -> tuple[float, float]:
    """Stature (mm, the skin's S extent) and BMI (mesh volume x TISSUE_DENSITY_KG_M3 over stature squared)."""
    stature = float(np.ptp(skin[0][:, 2]))
    return stature, volume_mm3 * 1e-9 * anny_body.TISSUE_DENSITY_KG_M3 / (stature / 1e3) ** 2


def xcat_like_body(stature_mm: float, bmi: float) -> anny_body.AnnyBodies:
    """An anny man of this stature and BMI (bisection on the height and weight phenotypes), in the neutral pose."""
    def body(height: float, weight: float) -> anny_body.AnnyBodies:
        return anny_body.sample_anny_bodies(np.random.default_rng(0), 1, neutral_pose=True, phenotypes=dict(
            gender=0.0, age=0.75, muscle=0.5, proportions=0.5, height=height, weight=weight))

    height, weight = 0.5, 0.5
    for _ in range(3):
        low, high = 0.0, 1.0
        for _ in range(16):
            height = (low + high) / 2
            low, high = (height, high) if body(height, weight).info[0]["height_mm"] < stature_mm else (low, height)
        low, high = 0.0, 1.0
        for _ in range(16):
            weight = (low + high) / 2
            low, high = (weight, high) if body(height, weight).info[0]["bmi"] < bmi else (low, weight)
    return body(height, weight)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sample", type=int, default=64, help="random anny bodies for the population check")
    args = parser.parse_args(argv)
    skin, volume_mm3 = xcat_skin_ras(args.data)
    refs = xcat_references()
    stature, bmi = stature_and_bmi(skin, volume_mm3)
    print(f"mesh50_XCAT: stature {stature:.0f} mm, BMI {bmi:.1f} (volume x {anny_body.TISSUE_DENSITY_KG_M3:.0f} kg/m3)")
    relations = {}
    for name in anny_body.RULE_LANDMARKS:
        measure = shoulder_relations if name.startswith("Shoulder") else knee_relations
        relations[name] = measure(skin, refs[name])
        print(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in relations[name].items()))
    # Both sides' relations averaged: the rule is symmetric, the phantom nearly so.
    ref = {kind: {k: float(np.mean([relations[f"{kind}{s}"][k] for s in "RL"])) for k in relations[f"{kind}R"]}
           for kind in ("Shoulder", "Knee")}
    body = xcat_like_body(stature, bmi)
    print(f"anny body: {body.info[0]['height_mm']:.0f} mm, BMI {body.info[0]['bmi']:.1f}")
    vertices = (body.vertices_ras[0].astype(np.float64), body.faces)
    shoulder, knee = anny_body.SHOULDER_RULE, anny_body.KNEE_RULE
    for _ in range(6):
        points = anny_body.rule_landmarks(body, shoulder, knee)[0]
        targets = np.stack([target(vertices, n, p, ref[n[:-1]])
                            for n, p in zip(anny_body.RULE_LANDMARKS, points, strict=True)])
        shoulder, knee, residuals = anny_body.fit_landmark_rules(body, targets[None])
    print(f"SHOULDER_RULE = {np.round(shoulder, 1).tolist()}  KNEE_RULE = {np.round(knee, 1).tolist()}")
    print("fit residuals (mm): " + ", ".join(f"{n} {r:.1f}" for n, r in zip(anny_body.RULE_LANDMARKS, residuals[0],
                                                                           strict=True)))
    points = anny_body.rule_landmarks(body, shoulder, knee)[0]
    for n, p in zip(anny_body.RULE_LANDMARKS, points, strict=True):
        measure = shoulder_relations if n.startswith("Shoulder") else knee_relations
        got = measure(vertices, p)
        print(f"  {n}: " + ", ".join(f"{k} {got[k]:.3f} (ref {relations[n][k]:.3f})" for k in got))
    rig = body.rule_origins_ras[0]
    print("rig joints -> rules (mm): " + ", ".join(f"{n} {np.linalg.norm(p - r):.1f}"
                                                for n, p, r in zip(anny_body.RULE_LANDMARKS, points, rig, strict=True)))
    # The relations over random bodies of the population prior (with the thin and obese tails), in the same pose.
    sample = anny_body.sample_anny_bodies(np.random.default_rng(2026), args.sample, neutral_pose=True)
    lm = anny_body.rule_landmarks(sample, shoulder, knee)
    rows: dict[str, list[float]] = {}
    for b in range(len(sample)):
        v = (sample.vertices_ras[b].astype(np.float64), sample.faces)
        for n, p in zip(anny_body.RULE_LANDMARKS, lm[b], strict=True):
            measure = shoulder_relations if n.startswith("Shoulder") else knee_relations
            for k, value in measure(v, p).items():
                rows.setdefault(f"{n[:-1]} {k}", []).append(value)
    heights = [i["height_mm"] for i in sample.info]
    bmis = [i["bmi"] for i in sample.info]
    print(f"{len(sample)} random bodies (height {min(heights):.0f}-{max(heights):.0f} mm, BMI {min(bmis):.1f}-"
          f"{max(bmis):.1f}), neutral pose, both sides:")
    for k, values in rows.items():
        print(f"  {k}: {np.mean(values):.3f} +- {np.std(values):.3f} ({np.min(values):.3f}..{np.max(values):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
