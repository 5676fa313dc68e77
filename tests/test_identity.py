import numpy as np

from splatworld.evaluation import identity_metrics


def test_perfect_tracking_with_reshuffled_labels():
    gt = np.array([[3, 9, 0, 4], [7, 2, 5, 0]])
    m = identity_metrics(gt, gt[::-1].copy())  # track order does not matter
    assert m["idf1"] == 1.0 and m["id_switches"] == 0 and m["idfp"] == 0 and m["idfn"] == 0


def test_hand_computed_switch():
    # Object B is followed by track 1 for two frames, then by track 2 for two frames.
    gt = np.array([[1, 1, 1, 1], [2, 2, 2, 2]])
    pred = np.array([[1, 1, 1, 1], [2, 2, 0, 0], [0, 0, 2, 2]])
    m = identity_metrics(gt, pred)
    # Best one-to-one: A-t0 (4), B-t1 (2) or B-t2 (2): IDTP = 6 of 8 gt and 8 pred detections.
    assert m["idtp"] == 6 and m["idfn"] == 2 and m["idfp"] == 2
    assert abs(m["idf1"] - 12 / 16) < 1e-12 and m["id_switches"] == 1


def test_spurious_and_missing_tracks():
    gt = np.array([[1, 1, 0, 0]])
    pred = np.array([[0, 1, 0, 0], [0, 0, 3, 3]])  # misses frame 0, and a spurious track
    m = identity_metrics(gt, pred)
    assert m["idtp"] == 1 and m["idfn"] == 1 and m["idfp"] == 2
    assert abs(m["idf1"] - 2 / 5) < 1e-12


def test_edge_cases():
    assert identity_metrics(np.zeros((2, 3)), np.zeros((0, 3)))["idf1"] == 1.0  # nothing to find, nothing found
    m = identity_metrics(np.array([[1, 1]]), np.zeros((0, 2)))
    assert m["idf1"] == 0.0 and m["idfn"] == 2


def test_reappearance_events_hand_made():
    from splatworld.evaluation import reappearances

    still = [0.0, 0.0, 0.0, 1, 0, 0, 0]
    gt = [{"id": 7, "labels": [4, 0, 0, 5, 6, 0, 2], "poses": [still] * 7}]
    moved = [0.003, 0.0, 0.0, 1, 0, 0, 0]
    tracks = [
        # owns the object before, misses frame 3 (a sliver), reclaims it at 4, 3 mm off
        {"labels": [4, 0, 0, 0, 6, 0, 0], "poses": [still] * 4 + [moved] * 3,
         "beliefs": [0.5, 0.9, 0.95, 0.97, 0.98, 0.99, 0.99]},
        {"labels": [0, 0, 0, 0, 0, 0, 2], "poses": [None] * 6 + [still]},  # a second track takes it at 6
    ]
    first, second = reappearances(gt, tracks, fps=1.0)
    assert first["reidentified"] and first["reclaim_delay"] == 1 and first["hidden_seconds"] == 2.0
    assert first["belief"] == 0.95 and abs(first["pose_error"] - 0.003) < 1e-12
    assert not second["reidentified"] and second["reclaim_delay"] == 0
    assert not first["glimpse"] and not second["glimpse"]  # no visible_fraction recorded
    # recorded: the first return (frames 3-4) never more than 30 % in sight is a glimpse
    gt[0]["visible_fraction"] = [1.0, 0, 0, 0.1, 0.3, 0, 0.8]
    first, second = reappearances(gt, tracks, fps=1.0)
    assert first["glimpse"] and not second["glimpse"]
    assert not reappearances(gt, tracks, fps=1.0, min_visible_fraction=0.25)[0]["glimpse"]


def test_a_track_born_while_the_object_hid_does_not_reidentify_it():
    from splatworld.evaluation import reappearances

    still = [0.0, 0.0, 0.0, 1, 0, 0, 0]
    gt = [{"id": 1, "labels": [4, 4, 0, 0, 5, 5, 5, 5], "poses": [still] * 8}]
    # the memory loses the object while hidden; a new track takes it on its return and, holding
    # it for most frames, is the object's track by the IDF1 matching
    tracks = [{"labels": [4, 4, 0, 0, 0, 0, 0, 0], "poses": [still] * 2 + [None] * 6},
              {"labels": [0, 0, 0, 0, 5, 5, 5, 5], "poses": [None] * 4 + [still] * 4}]
    (event,) = reappearances(gt, tracks, fps=1.0)
    assert event["reclaim_delay"] == 0 and not event["reidentified"]
    assert np.isnan(event["pose_error"])
