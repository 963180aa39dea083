"""Geometry of the synthetic bodies and hands: landmarks where anatomy puts them, for many random people."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkDetectorLib.synthetic import body, hand
from LandmarkDetectorLib.synthetic.anatomy import BODY_LANDMARKS, HAND_LANDMARKS
from LandmarkDetectorLib.synthetic.shapes import ellipsoid, sphere, tapered

SEEDS = range(50)


def _body(seed: int, arms: str | None = None) -> tuple[body.BodyParams, body.Anatomy]:
    rng = np.random.default_rng([seed, 7])
    params = body.sample_body(rng)
    pose = body.sample_pose(rng)
    if arms is not None:
        pose = body.BodyPose(**{**pose.__dict__, "arms": arms})
    return params, body.build_body(params, pose, inner=False)


def _skin_distance(anatomy: body.Anatomy, point: np.ndarray) -> float:
    return float(anatomy.skin.signed_distance(point).min())


def test_round_cone_signed_distance_and_support_are_exact() -> None:
    cone = tapered([0, 0, 0], [0, 0, 100], 20.0, 10.0)
    assert cone.signed_distance([[0, 0, -20.0]])[0, 0] == pytest.approx(0.0, abs=1e-9)  # pole of ball A
    assert cone.signed_distance([[0, 0, 110.0]])[0, 0] == pytest.approx(0.0, abs=1e-9)  # pole of ball B
    assert cone.signed_distance([[0, 0, 50.0]])[0, 0] < -10.0
    value, point = ellipsoid([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]).support([0.0, 0.0, 1.0])
    assert value[0] == pytest.approx(33.0) and np.allclose(point[0], [1.0, 2.0, 33.0])
    low, high = sphere([5.0, 0.0, 0.0], 2.0).bounds_ras()
    assert np.allclose(low, [3.0, -2.0, -2.0]) and np.allclose(high, [7.0, 2.0, 2.0])


@pytest.mark.parametrize("arms", ["down", "raised"])
def test_body_landmark_order_and_sides(arms: str) -> None:
    for seed in SEEDS:
        params, anatomy = _body(seed, arms)
        lm = anatomy.landmarks_ras
        assert tuple(lm) == BODY_LANDMARKS
        for side in "RL":
            assert lm["HeadTop"][2] > lm[f"Shoulder{side}"][2] > lm[f"Knee{side}"][2] > lm[f"BigToe{side}"][2]
        assert lm["ShoulderR"][0] > 0 > lm["ShoulderL"][0]  # RAS: +R is the patient's right
        assert lm["KneeR"][0] > 0 > lm["KneeL"][0]
        assert lm["BigToeR"][0] > lm["BigToeL"][0]
        if arms == "raised":
            for side in "RL":
                assert lm[f"MiddleFingerTip{side}"][2] > lm[f"Shoulder{side}"][2] + 100.0
        else:
            for side in "RL":
                assert lm[f"Knee{side}"][2] < lm[f"MiddleFingerTip{side}"][2] < lm[f"Shoulder{side}"][2]


def test_body_proportions_follow_height() -> None:
    for seed in SEEDS:
        params, anatomy = _body(seed)
        lm = anatomy.landmarks_ras
        h = params.height_mm
        assert 1450.0 <= h <= 2050.0 and 16.0 <= params.bmi <= 45.0
        assert lm["HeadTop"][2] == pytest.approx(h, abs=0.5)  # soles at S = 0, vertex at the height
        shoulder_width = lm["ShoulderR"][0] - lm["ShoulderL"][0]
        assert 0.18 * h < shoulder_width < 0.29 * h
        for side in "RL":
            assert 0.24 * h < lm[f"Knee{side}"][2] < 0.34 * h
            assert 0.2 * h < np.linalg.norm(lm[f"MiddleFingerTip{side}"] - lm[f"Shoulder{side}"]) < 0.45 * h
        low, high = anatomy.skin.bounds_ras()
        assert -15.0 < low[1] < 5.0  # lies on the table at A = 0 (soft tissue may sink in a little)
        assert 0.11 * h < high[1] - low[1] < 0.35 * h  # body depth, supine


def test_body_landmarks_on_or_inside_the_skin() -> None:
    for seed in SEEDS[:20]:
        _, anatomy = _body(seed)
        lm = anatomy.landmarks_ras
        for name in ("HeadTop", "BigToeR", "BigToeL"):
            assert abs(_skin_distance(anatomy, lm[name])) < 0.5, name  # surface landmarks lie on the skin
        for name in ("ShoulderR", "ShoulderL", "KneeR", "KneeL"):
            assert _skin_distance(anatomy, lm[name]) < -15.0, name  # joint centres are deep inside
        above = lm["HeadTop"] + [0.0, 0.0, 1.0]
        assert _skin_distance(anatomy, above) > 0.5  # nothing of the head above the vertex


def test_body_fingertips_at_the_end_of_straight_arms() -> None:
    for seed in SEEDS[:20]:
        rng = np.random.default_rng([seed, 7])
        params = body.sample_body(rng)
        pose = body.BodyPose(**{**body.sample_pose(rng).__dict__, "arms": "down", "hand_place": ("beside", "beside")})
        anatomy = body.build_body(params, pose, inner=False)
        lm = anatomy.landmarks_ras
        for side in "RL":
            tip = lm[f"MiddleFingerTip{side}"]
            assert abs(_skin_distance(anatomy, tip)) < 0.5
            arm = tip - lm[f"Shoulder{side}"]
            assert 0.36 * params.height_mm < np.linalg.norm(arm) < 0.45 * params.height_mm
            assert _skin_distance(anatomy, tip + 2.0 * arm / np.linalg.norm(arm)) > 0.0  # nothing beyond the tip


def test_body_arms_down_vertex_is_the_top_of_the_body() -> None:
    for seed in SEEDS[:20]:
        _, anatomy = _body(seed, "down")
        assert anatomy.skin.bounds_ras()[1][2] == pytest.approx(anatomy.landmarks_ras["HeadTop"][2], abs=1e-6)


def test_same_generator_state_gives_the_same_body() -> None:
    _, a = _body(3)
    _, b = _body(3)
    assert np.array_equal(a.skin.ras_from_local, b.skin.ras_from_local)
    assert np.array_equal(a.landmark_array(), b.landmark_array())


def test_bodies_share_a_primitive_layout() -> None:
    counts = {len(_body(seed)[1].skin) for seed in SEEDS[:20]}
    assert len(counts) == 1  # needed by render_batch


def test_hand_geometry() -> None:
    for seed in SEEDS:
        params = hand.sample_hand(np.random.default_rng([seed, 11]))
        anatomy = hand.build_hand(params)
        lm = anatomy.landmarks_ras
        assert tuple(lm) == HAND_LANDMARKS
        middle = lm["MiddleTip"]  # the wrist centre is at the origin
        assert 150.0 <= params.length_mm <= 220.0
        assert 0.93 * params.length_mm < np.linalg.norm(middle) <= params.length_mm + 1.0
        assert middle[2] > 0.8 * np.linalg.norm(middle)  # fingers point superior
        # Fingers of a left hand seen from its back, fingers up: index .. little run towards the patient's right.
        x = [lm[n][0] for n in ("IndexTip", "MiddleTip", "RingTip", "LittleTip")]
        assert np.all(np.diff(x) > 0), x
        assert lm["ThumbTip"][2] < min(lm[n][2] for n in ("IndexTip", "RingTip", "LittleTip"))
        for name, tip in lm.items():
            assert abs(_skin_distance(anatomy, tip)) < 0.5, name
            outward = tip / np.linalg.norm(tip)
            assert _skin_distance(anatomy, tip + outward) > 0.5, name  # the farthest point from the wrist
            assert _skin_distance(anatomy, tip - 2.0 * outward) < 0.0, name
        # The middle fingertip is the farthest point of the whole hand from the wrist.
        values, _ = anatomy.skin.support(middle / np.linalg.norm(middle))
        assert values.max() == pytest.approx(np.linalg.norm(middle), abs=0.5)


def test_hand_thumb_spread_varies_most() -> None:
    angles = []
    for seed in SEEDS:
        lm = hand.build_hand(hand.sample_hand(np.random.default_rng([seed, 11]))).landmarks_ras
        # Angles in the palm plane, measured from the middle finger (removes the roll of the whole hand).
        ref = np.arctan2(-lm["MiddleTip"][0], lm["MiddleTip"][2])
        angles.append([np.degrees(np.arctan2(-lm[n][0], lm[n][2]) - ref)
                       for n in ("ThumbTip", "IndexTip", "LittleTip")])
    spread = np.std(np.array(angles), axis=0)
    assert spread[0] > 2 * spread[1] and spread[0] > 2 * spread[2]
