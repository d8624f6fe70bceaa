"""Body tracking: registration accuracy, the motion criterion, losing track, masking the arm."""

import functools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from tuina.operators.geometry import make_transform, outside_capsules, transform_points
from tuina.operators.phantom import placement, surface_samples
from tuina.operators.tracking import (
    BodyTracker,
    TrackerConfig,
    rotation_angle_deg,
)

FRAME_NS = 33_333_333  # 30 Hz
NOMINAL = placement((0.55, 0.2, 0.0), 90.0)


@functools.cache
def phantom_surface() -> tuple[np.ndarray, np.ndarray]:
    return surface_samples(0.005)


def upper_body(T: np.ndarray, rng: np.random.Generator, noise_m: float = 0.001) -> np.ndarray:
    """What a camera above sees of the phantom at base_T_body = T, with a table around it."""
    pts, normals = phantom_surface()
    seen = transform_points(T, pts[(normals @ T[:3, :3].T)[:, 2] > 0.2])
    seen = seen[seen[:, 2] > 0.01]
    table = np.column_stack([rng.uniform(0.2, 0.9, 4000), rng.uniform(-0.7, 0.9, 4000),
                             np.zeros(4000)])
    cloud = np.vstack([seen, table])
    return cloud + rng.normal(scale=noise_m, size=cloud.shape)


def body_motion(t_mm, r_deg) -> np.ndarray:
    """A base-frame motion of the body about its own origin."""
    local = make_transform(Rotation.from_euler("xyz", r_deg, degrees=True).as_matrix(),
                           np.asarray(t_mm) * 1e-3)
    return NOMINAL @ local @ np.linalg.inv(NOMINAL)


def tracker_with_reference(rng, **cfg) -> BodyTracker:
    tracker = BodyTracker(TrackerConfig(**cfg))
    assert tracker.set_reference(upper_body(NOMINAL, rng), 0) == "ok"
    return tracker


def test_reference_drops_the_table():
    rng = np.random.default_rng(0)
    tracker = tracker_with_reference(rng)
    ref = np.asarray(tracker.reference.points)
    assert ref[:, 2].min() > 0.01
    np.testing.assert_allclose(tracker.table[:3], [0, 0, 1], atol=0.01)


@pytest.mark.parametrize("t_mm,r_deg", [((10, 0, 0), (0, 0, 0)), ((0, 20, 0), (0, 0, 3)),
                                        ((-8, 12, 0), (5, 0, 0)), ((12, -16, 2), (0, 2, 4))])
def test_motion_is_recovered_within_half_a_millimetre(t_mm, r_deg):
    rng = np.random.default_rng(1)
    tracker = tracker_with_reference(rng)
    truth = body_motion(t_mm, r_deg)
    # a smooth motion over ten frames, as the camera sees it
    for k in range(1, 11):
        s = k / 10
        step = body_motion(np.multiply(t_mm, s), np.multiply(r_deg, s))
        est = tracker.update(upper_body(step @ NOMINAL, rng), k * 3 * FRAME_NS)
        assert est.status == "ok", est
    acupoint = transform_points(NOMINAL, np.array([[0.0, -0.1, 0.1]]))
    err = transform_points(est.estimate, acupoint) - transform_points(truth, acupoint)
    assert np.linalg.norm(err) < 0.5e-3
    assert rotation_angle_deg(est.estimate[:3, :3] @ truth[:3, :3].T) < 0.2
    assert est.fitness > 0.9 and est.inlier_rmse < 0.006  # point-to-point, 10 mm voxels


def test_motion_criterion_gates_small_motions():
    rng = np.random.default_rng(2)
    tracker = tracker_with_reference(rng, translation_threshold_m=0.002)
    small = tracker.update(upper_body(body_motion((1, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                           FRAME_NS)
    assert small.status == "ok" and not small.updated
    np.testing.assert_array_equal(small.transform, np.eye(4))
    large = tracker.update(upper_body(body_motion((3, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                           20 * FRAME_NS)
    assert large.updated
    assert abs(large.transform[:3, 3] @ (NOMINAL[:3, 0]) - 0.003) < 0.0005


def test_a_jerk_loses_the_track_once_and_stops_updates():
    rng = np.random.default_rng(3)
    tracker = tracker_with_reference(rng)
    ok = tracker.update(upper_body(body_motion((5, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                        30 * FRAME_NS)
    assert ok.status == "ok" and ok.updated
    # 15 mm within one frame: 0.45 m/s
    jerk = tracker.update(upper_body(body_motion((20, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                          31 * FRAME_NS)
    assert jerk.status == "large_motion" and jerk.reground and not jerk.updated
    np.testing.assert_array_equal(jerk.transform, ok.transform)
    after = tracker.update(upper_body(body_motion((20, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                           40 * FRAME_NS)
    assert after.status == "lost" and not after.reground
    np.testing.assert_array_equal(after.transform, ok.transform)
    # a new reference (the target found again) restores tracking
    assert tracker.set_reference(upper_body(body_motion((20, 0, 0), (0, 0, 0)) @ NOMINAL,
                                            rng), 41 * FRAME_NS) == "ok"
    assert tracker.update(upper_body(body_motion((20, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                          42 * FRAME_NS).status == "ok"


def test_motion_too_far_from_the_reference_asks_for_regrounding():
    rng = np.random.default_rng(4)
    tracker = tracker_with_reference(rng, max_total_m=0.015)
    statuses = []
    for k in range(1, 25):
        moved = body_motion((k, 0, 0), (0, 0, 0)) @ NOMINAL  # 1 mm per 0.1 s
        statuses.append(tracker.update(upper_body(moved, rng), k * 3 * FRAME_NS))
    # 15 mm (k = 15) is on the limit: ICP's estimate falls either side of it
    first = next(i for i, e in enumerate(statuses) if e.status != "ok")
    assert first in (14, 15)
    assert statuses[first].status == "large_motion" and statuses[first].reground
    assert all(e.status == "lost" and not e.reground for e in statuses[first + 1:])


@pytest.mark.parametrize("make,status", [
    (lambda c: np.zeros((0, 3)), "no_cloud"),
    (lambda c: c[:40], "no_cloud"),
    (lambda c: np.full_like(c, np.nan), "no_cloud"),
    # the body half out of view: only the half nearer the head is seen
    (lambda c: c[c[:, 1] < np.median(c[c[:, 2] > 0.02, 1])], "partial_view"),
])
def test_bad_frames_give_a_status_and_no_update(make, status):
    rng = np.random.default_rng(5)
    tracker = tracker_with_reference(rng)
    good = tracker.update(upper_body(body_motion((4, 0, 0), (0, 0, 0)) @ NOMINAL, rng),
                          30 * FRAME_NS)
    moved = upper_body(body_motion((6, 0, 0), (0, 0, 0)) @ NOMINAL, rng)
    est = tracker.update(make(moved), 31 * FRAME_NS)
    assert est.status == status and not est.updated and not est.reground
    np.testing.assert_array_equal(est.transform, good.transform)


def test_bad_frames_in_a_row_lose_the_track():
    rng = np.random.default_rng(6)
    tracker = tracker_with_reference(rng, lost_after_frames=5)
    results = [tracker.update(np.zeros((0, 3)), k * FRAME_NS) for k in range(1, 8)]
    assert [r.reground for r in results] == [False] * 4 + [True, False, False]
    assert results[-1].status == "lost"


def test_arm_capsules_mask_the_arm_and_keep_the_body():
    from tuina.operators.arms import arm_model

    arm = arm_model("fr3", 0.0466)
    q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
    chain = arm.chain(q)
    assert len(chain) == 13  # 8 joint origins, flange, hand ends, flange, tool
    rng = np.random.default_rng(7)
    # points on the links, and body points 20 cm below the tool
    s = rng.uniform(size=(500, 1))
    i = rng.integers(0, len(chain) - 1, 500)
    on_arm = chain[i] + s * (chain[i + 1] - chain[i]) + rng.normal(scale=0.02, size=(500, 3))
    tool = chain[-1]
    body = tool + np.column_stack([rng.uniform(-0.3, 0.3, 500), rng.uniform(-0.3, 0.3, 500),
                                   np.full(500, -0.2)])
    assert not outside_capsules(on_arm, chain, 0.08).any()
    assert outside_capsules(body, chain, 0.08).all()
    # the tool tip from the arm's own forward kinematics sits where the planner puts it
    from tuina.operators.arms import arm_kinematics

    arm = arm_kinematics("fr3", 0.0466)
    np.testing.assert_allclose(arm.forward(q).translation, tool, atol=1e-9)


# --- the controller following the body ----------------------------------------------------

def contact_plan(phases=("approach", "contact", "press", "press", "retreat")):
    from tuina.operators.planner import Plan

    n = len(phases)
    return Plan(np.arange(n) * 1.0, np.array([[0.4, 0.0, 0.1]] * n),
                np.array([[1.0, 0, 0, 0]] * n),
                np.array([6.0 if p in ("contact", "press") else 0.0 for p in phases]),
                list(phases), np.array([[0.0, 0, 1]] * n), np.zeros((n, 0)))


def tissue(p: np.ndarray) -> float:
    """1000 N/m below z = 0.1."""
    return max(0.0, (0.1 - p[2]) * 1000.0)


def drive(ctrl, plan, steps, motion_at=lambda t: np.eye(4), twist_at=lambda t: None,
          force_at=tissue, tool=(0.4, 0.0, 0.14), start=0.0, dt=0.01):
    tool = np.asarray(tool, float)
    outs = []
    for k in range(steps):
        t = start + k * dt
        out = ctrl.step(t, plan, tool,
                        np.array([0, 0, -force_at(tool), 0, 0, 0]), motion_at(t), twist_at(t))
        outs.append(out)
        tool = tool + 0.5 * (out.position - tool)
    return outs, tool


def test_trajectory_follows_the_body_rate_limited_without_jumps():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    ctrl = HybridForceController(ForceConfig(max_follow_speed=0.06))
    plan = contact_plan(("approach",) * 5)
    moved = make_transform(Rotation.from_euler("z", 3, degrees=True).as_matrix(),
                           np.array([0.02, 0.0, 0.0]))
    carried, turned = [], []  # the plan's point as the applied motion carries it; its turn
    tool = np.array([0.4, 0, 0.1])
    for k in range(150):
        out = ctrl.step(k * 0.01, plan, tool, np.zeros(6), moved)
        tool = out.position
        A = ctrl.applied_motion
        carried.append(A[:3, :3] @ [0.4, 0, 0.1] + A[:3, 3])
        turned.append(Rotation.from_matrix(A[:3, :3]).magnitude())
    steps = np.linalg.norm(np.diff(carried, axis=0), axis=1)
    assert steps.max() <= 0.06 * 0.01 + 1e-9  # the point never faster than the follow limit
    assert np.diff(turned).max() <= np.radians(15.0) * 0.01 + 1e-9  # nor the turn
    # a straight line: the rotation's own translation is carried along, never torn from it
    line = (carried[-1] - carried[0]) / np.linalg.norm(carried[-1] - carried[0])
    off_line = [np.linalg.norm((c - carried[0]) - ((c - carried[0]) @ line) * line)
                for c in carried]
    assert max(off_line) < 1e-3
    np.testing.assert_allclose(ctrl.applied_motion, moved, atol=1e-9)
    # P_u = R P_d + t once caught up
    np.testing.assert_allclose(out.position, moved[:3, :3] @ [0.4, 0, 0.1] + moved[:3, 3],
                               atol=1e-3)


def test_feed_forward_twist_carries_the_body_velocity():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    ctrl = HybridForceController(ForceConfig())
    plan = contact_plan()
    body_twist = np.array([0.01, 0.0, 0.005, 0.0, 0.0, 0.0])
    outs, _ = drive(ctrl, plan, 800, twist_at=lambda t: body_twist, start=1.0)
    pressing = [o for o in outs if o.phase == "press"]
    assert pressing  # the surface's motion is fed forward in full, also along the normal
    np.testing.assert_allclose(pressing[-1].twist[:3], body_twist[:3], atol=1e-9)
    approach = HybridForceController(ForceConfig()).step(
        0.0, plan, np.array([0.4, 0, 0.14]), np.zeros(6), np.eye(4), body_twist)
    np.testing.assert_allclose(approach.twist[:3], body_twist[:3], atol=1e-9)


def test_plan_waits_for_contact_then_gives_up_safely():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    # a surface 1 cm further than planned: the press waits until the tool touches
    ctrl = HybridForceController(ForceConfig(search_speed=0.02))
    outs, _ = drive(ctrl, contact_plan(), 500, force_at=lambda p: max(0.0, (0.09 - p[2]) * 1e3),
                    start=1.0)
    phases = [o.phase for o in outs]
    first_press = phases.index("press")
    assert outs[first_press].force_measured_n > 1.0 or outs[first_press - 1].force_measured_n > 1
    assert ctrl.paused_s > 0
    # no surface at all: the search stops MAX_DEPTH past the plan and backs off
    ctrl = HybridForceController(ForceConfig(search_speed=0.02, max_depth_m=0.02))
    outs, tool = drive(ctrl, contact_plan(), 600, force_at=lambda p: 0.0, start=1.0)
    assert ctrl.aborted and "no contact" in ctrl.abort_reason
    assert min(o.position[2] for o in outs) >= 0.1 - 0.02 - 1e-9
    assert outs[-1].mode == "hold" and outs[-1].phase == "abort"
    assert tool[2] > 0.1


def test_abort_backs_off_along_the_normal_and_never_pushes():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    ctrl = HybridForceController(ForceConfig(retreat_m=0.05))
    plan = contact_plan(("approach", "contact") + ("press",) * 8 + ("retreat",))
    outs, tool = drive(ctrl, plan, 700, start=1.0)
    assert outs[-1].phase == "press" and abs(outs[-1].force_measured_n - 6.0) < 1.0
    ctrl.abort(8.0, tool, "body tracking large motion")
    after, end = drive(ctrl, plan, 300, start=8.0, tool=tool)
    z = np.array([o.position[2] for o in after])
    assert np.all(np.diff(z) >= -1e-12)  # only away from the body
    assert abs(z[-1] - (tool[2] + 0.05)) < 1e-6 and after[-1].mode == "hold"
    assert all(o.force_target_n == 0.0 and o.phase == "abort" for o in after)
    assert np.all(after[-1].twist == 0)


def test_an_implausible_force_jump_aborts_and_backs_off():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    ctrl = HybridForceController(ForceConfig(max_force_jump_n=5.0))
    plan = contact_plan(("approach", "contact") + ("press",) * 8 + ("retreat",))
    outs, tool = drive(ctrl, plan, 700, start=1.0)
    assert not ctrl.aborted and abs(outs[-1].force_measured_n - 6.0) < 1.0
    # the reading drops to zero while pressing: pushing on to "find" the force would hurt
    after, _ = drive(ctrl, plan, 200, start=8.0, tool=tool, force_at=lambda p: 0.0)
    assert ctrl.aborted and "contact lost" in ctrl.abort_reason and not ctrl.fault
    z = np.array([o.position[2] for o in after])
    assert np.all(np.diff(z) >= -1e-12) and z[-1] > tool[2] + 0.03


def test_a_jump_in_contact_is_a_fault_a_regained_contact_is_not():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    plan = contact_plan(("approach", "contact") + ("press",) * 8 + ("retreat",))
    ctrl = HybridForceController(ForceConfig())
    _, tool = drive(ctrl, plan, 700, start=1.0)
    drive(ctrl, plan, 5, start=8.0, tool=tool, force_at=lambda p: 11.0)  # a +5 N bias step
    assert ctrl.aborted and ctrl.fault == "force_jump"
    assert "the force sensor, or the body moving into the tool" in ctrl.abort_reason
    # the same jump with the tool thrown back out of the body: the body pushed, not the sensor
    pushed = HybridForceController(ForceConfig())
    _, tool = drive(pushed, plan, 700, start=1.0)
    pushed.step(8.0, plan, tool,
                np.array([0, 0, -6.0, 0, 0, 0]), np.eye(4))
    pushed.step(8.01, plan, tool + [0, 0, 0.002],
                np.array([0, 0, -11.0, 0, 0, 0]), np.eye(4))
    assert pushed.fault == "body_push" and "body pushed" in pushed.abort_reason
    # off the body (0 N), then back on it with 5.8 N within one period: contact, no fault
    regained = HybridForceController(ForceConfig())
    drive(regained, plan, 2, start=3.0, force_at=lambda p: 0.0)
    drive(regained, plan, 5, start=3.02, force_at=lambda p: 5.8)
    assert not regained.aborted


def test_the_controller_stop_latches_until_a_new_trajectory():
    from tuina.operators.force_control import ForceConfig, HybridForceController

    plan = contact_plan(("approach", "contact") + ("press",) * 8 + ("retreat",))
    ctrl = HybridForceController(ForceConfig())
    _, tool = drive(ctrl, plan, 700, start=1.0)
    over, _ = drive(ctrl, plan, 1, start=8.0, tool=tool, force_at=lambda p: 20.0)
    assert over[-1].mode == "stop"
    calm, _ = drive(ctrl, plan, 20, start=8.01, tool=tool, force_at=lambda p: 6.0)
    assert all(o.mode == "stop" for o in calm)


def test_follow_error_leaves_out_each_contacts_settling_and_counts_breaks():
    from tuina.operators.session import contact_breaks, follow_errors

    # two contacts, samples every 60 ms: four of each fall in its first 200 ms
    t = np.concatenate([np.arange(20) * 0.06, 2.0 + np.arange(20) * 0.06])
    err = np.tile(np.where(np.arange(20) < 4, 9.0, 1.0), 2)
    kept = follow_errors(t, err, settle_s=0.2)
    assert len(kept) == len(t) - 8 and np.all(kept == 1.0)
    assert contact_breaks(t) == 1 and contact_breaks(t[:20]) == 0


def test_follow_drift_is_what_the_motion_added_not_the_perception_offset():
    from tuina.operators.session import follow_drift

    t = np.arange(100) * 0.05  # one contact, 5 s
    offsets = np.tile([3.0, -2.0, 0.0], (100, 1))  # found 3.6 mm off: followed perfectly
    offsets[:4] = [9.0, 9.0, 9.0]  # settling, left out
    assert np.allclose(follow_drift(t, offsets, settle_s=0.2), 0.0)
    offsets[60:, 0] += 2.0  # from 3 s on, the tool lags the body by 2 mm
    drift = follow_drift(t, offsets, settle_s=0.2)
    assert len(drift) == 96 and np.allclose(drift[56:], 2.0) and np.allclose(drift[:56], 0.0)
    assert len(follow_drift(np.zeros(0), np.zeros((0, 3)), 0.2)) == 0


def test_loop_timer_measures_rate_jitter_and_latency():
    from tuina.operators.timing import LoopTimer

    timer = LoopTimer()
    for k in range(100):
        wall = k * 0.01 + (0.004 if k == 50 else 0.0)  # one late state
        timer.published(k * 10_000_000, wall)
        timer.commanded(k * 10_000_000, wall + 0.002)
    timer.commanded(123, 2.0)  # a command for a state never seen: no latency
    stats = timer.summary()
    assert abs(stats["state_hz"] - 100.0) < 1.0
    assert abs(stats["latency_p50_ms"] - 2.0) < 1e-6
    assert 3.0 < stats["state_jitter_p99_ms"] <= 4.0 + 1e-9


def test_tracker_watch_counts_silence_from_the_plan_and_stops_feeding_a_stale_velocity():
    from tuina.operators.tracking import TrackerWatch

    ms = 1_000_000
    watch = TrackerWatch(timeout_s=0.5)
    assert watch.state(100 * ms, 0)[0] is False  # no tracker in this graph: never silent
    watch.motion(0)
    watch.motion(50 * ms)  # frames every 50 ms
    assert watch.state(1000 * ms, 0) == (False, True, 0.0)
    assert watch.state(1090 * ms, 0)[1] is True  # within two frame periods
    assert watch.state(1110 * ms, 0)[1] is False  # past them: nothing fed forward
    assert watch.state(1501 * ms, 0)[0] is True  # silent for over 0.5 s
    watch.new_plan()  # a new trajectory at 2 s: silence counts from its start
    assert watch.state(2400 * ms, 2000 * ms)[0] is False
    assert watch.state(2600 * ms, 2000 * ms)[0] is True


def test_the_plan_follower_tells_phases_once_and_aborts_on_a_silent_tracker():
    import dataclasses
    from types import SimpleNamespace as Msg

    from tuina.operators.force_control import ForceConfig, PlanFollower

    follower = PlanFollower(ForceConfig(), tracker_timeout_s=0.5, follow_lead_s=0.1,
                            max_lead_s=0.25)
    good = contact_plan()
    bad = dataclasses.replace(good, positions=np.full_like(good.positions, np.nan))
    assert "NaN" in follower.new_plan(bad, 0, 0) and follower.plan is None
    assert follower.new_plan(contact_plan(), 0, 7) is None  # a good plan starts afresh
    ms = 1_000_000
    told = []
    tool = np.array([0.4, 0.0, 0.14])
    for k in range(30):  # the tracker speaks for the first 0.1 s, then falls silent
        if k < 10:
            follower.on_motion(Msg(reference_stamp_ns=7, status="ok",
                                   rotation=list(np.eye(3).ravel()),
                                   translation=[0.0, 0.0, 0.0], twist=[0.0] * 6), k * 10 * ms)
        ref, notices = follower.step(k * 10 * ms, tool, np.zeros(6))
        told += [(n.kind, n.detail) for n in notices]
    assert told[0] == ("phase", "approach")
    assert ("abort", "force-controller: no body motion for 0.5 s; backing off") not in told
    for k in range(30, 80):
        ref, notices = follower.step(k * 10 * ms, tool, np.zeros(6))
        told += [(n.kind, n.detail) for n in notices]
    assert ("abort", "force-controller: no body motion for 0.5 s; backing off") in told
    assert [kind for kind, _ in told].count("abort") == 1  # told once
    # a motion relative to an older reference belongs to an older plan: ignored
    follower.new_plan(contact_plan(), 0, 9)
    follower.on_motion(Msg(reference_stamp_ns=7, status="lost", rotation=[], translation=[],
                           twist=[]), 90 * ms)
    assert follower.track_lost == ""
    follower.on_motion(Msg(reference_stamp_ns=9, status="lost", rotation=[], translation=[],
                           twist=[]), 91 * ms)
    assert follower.track_lost == "body tracking lost"


def test_a_pause_backs_off_the_body_holds_and_is_told_once():
    """The person's pause mid-press: the tool only moves away along the normal, the force
    target drops to zero, one ``paused`` notice (no abort: nothing went wrong), and the
    follower stays paused until resumed."""
    from types import SimpleNamespace as Msg

    from tuina.operators.force_control import ForceConfig, PlanFollower

    follower = PlanFollower(ForceConfig(retreat_m=0.04), tracker_timeout_s=5.0,
                            follow_lead_s=0.0, max_lead_s=0.1)
    plan = contact_plan(("approach", "contact") + ("press",) * 8 + ("retreat",))
    assert follower.new_plan(plan, 0, 7) is None
    ms = 1_000_000
    tool, told, outs = np.array([0.4, 0.0, 0.14]), [], []

    def run(first: int, last: int) -> None:
        nonlocal tool
        for k in range(first, last):
            follower.on_motion(Msg(reference_stamp_ns=7, status="ok",
                                   rotation=list(np.eye(3).ravel()), translation=[0.0] * 3,
                                   twist=[0.0] * 6), k * 10 * ms)
            ref, notices = follower.step(k * 10 * ms, tool,
                                         np.array([0, 0, -tissue(tool), 0, 0, 0]))
            told.extend((n.kind, n.detail) for n in notices)
            outs.append(ref)
            tool = tool + 0.5 * (ref.position - tool)

    run(0, 700)
    assert outs[-1].phase == "press" and tissue(tool) > 3.0  # pressing
    pressed_z = tool[2]
    follower.pause("the person paused the step")
    run(700, 1000)
    after = outs[700:]
    z = np.array([o.position[2] for o in after])
    assert np.all(np.diff(z) >= -1e-12) and z[-1] == pytest.approx(pressed_z + 0.04, abs=1e-6)
    assert all(o.force_target_n == 0.0 for o in after) and after[-1].mode == "hold"
    assert tissue(tool) == 0.0  # off the body
    paused = [t for t in told if t[0] == "paused"]
    assert paused == [("paused", "force-controller: paused (the person paused the step); "
                       "backing off, holding until resumed")]
    assert not [t for t in told if t[0] in ("abort", "error")]
    follower.pause("again")  # a second pause changes nothing
    assert follower.paused == "the person paused the step"
    follower.resume()
    run(1000, 1100)  # resumed: it holds where it is until the step's new plan comes
    assert all(o.mode == "hold" and o.position[2] == pytest.approx(z[-1]) for o in outs[1000:])
    assert not follower.paused


def test_a_motion_and_a_plan_arriving_together_give_one_command_in_either_order():
    """Between two robot states the tracker's motion and a new plan can come in either order
    (a stall lets both through at once); a replay cannot tell which, so the command must not
    depend on it."""
    from types import SimpleNamespace as Msg

    from tuina.operators.force_control import ForceConfig, PlanFollower

    ms = 1_000_000
    moved = Msg(reference_stamp_ns=7, status="ok", rotation=list(np.eye(3).ravel()),
                translation=[0.004, -0.002, 0.0], twist=[0.01, 0.0, 0.0, 0.0, 0.0, 0.0])
    outputs = []
    for motion_first in (True, False):
        follower = PlanFollower(ForceConfig(), tracker_timeout_s=0.5, follow_lead_s=0.05,
                                max_lead_s=0.25)
        if motion_first:
            follower.on_motion(moved, 5 * ms)
        assert follower.new_plan(contact_plan(), 0, 7) is None
        if not motion_first:
            follower.on_motion(moved, 5 * ms)
        tool, refs = np.array([0.4, 0.0, 0.14]), []
        for k in range(1, 60):
            ref, _ = follower.step(k * 10 * ms, tool, np.zeros(6))
            refs.append(np.concatenate([ref.position, ref.twist]))
        outputs.append(np.array(refs))
    assert np.array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0][-1, :3] - outputs[0][0, :3]).max() > 1e-4  # it did follow
