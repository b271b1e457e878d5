import numpy as np
import pytest

from ml.marks import (
    RegionMark,
    brightest_point_marks,
    froc,
    froc_steps,
    region_marks,
    sensitivity_at,
)


def grid_boxes(size: int = 256, patch: int = 64, stride: int = 32) -> np.ndarray:
    starts = range(0, size - patch + 1, stride)
    return np.array([(r, c, r + patch, c + patch) for r in starts for c in starts])


def test_neighbouring_patches_over_one_place_give_one_mark():
    boxes = grid_boxes()
    probs = np.zeros(len(boxes))
    probs[[0, 1]] = [0.9, 0.8]  # (0, 0) and (0, 32): overlap by half a patch
    marks = region_marks(boxes, probs, None, (256, 256))
    assert len(marks) == 1
    assert marks[0].score == pytest.approx(0.9)


def test_at_most_three_marks_and_none_below_the_floor():
    boxes = grid_boxes()
    probs = np.linspace(0.0, 0.99, len(boxes))
    marks = region_marks(boxes, probs, None, (256, 256), min_score=0.5)
    assert 1 <= len(marks) <= 3
    assert all(m.score >= 0.5 for m in marks)
    assert [m.score for m in marks] == sorted((m.score for m in marks), reverse=True)
    assert region_marks(boxes, np.full(len(boxes), 0.4), None, (256, 256)) == []


def test_a_mark_sits_on_the_heat_peak_inside_its_box():
    boxes = np.array([[64, 64, 128, 128]])
    heat = np.zeros((256, 256), np.float32)
    heat[100, 70] = 1.0
    heat[10, 10] = 1.0  # outside the box: ignored
    (mark,) = region_marks(boxes, np.array([0.9]), heat, (256, 256))
    assert (mark.row, mark.col) == (100, 70)


def test_without_heat_a_mark_sits_on_the_box_centre():
    (mark,) = region_marks(np.array([[0, 0, 64, 64]]), np.array([0.9]), None, (256, 256))
    assert (mark.row, mark.col) == (32, 32)


def test_boxes_in_the_scaled_image_map_to_the_input_image_pixels():
    # the predictor shrank a 512 x 1024 input to 256 x 512 before tiling
    boxes = np.array([[64, 128, 128, 192]])
    (mark,) = region_marks(boxes, np.array([0.9]), None, (512, 1024), scaled_shape=(256, 512))
    assert (mark.row, mark.col) == (192, 320)
    assert 16 <= mark.radius <= 64  # between 1/8 and 1/2 of the 128 px box in input pixels
    heat = np.zeros((512, 1024), np.float32)
    heat[200, 300] = 1.0
    (mark,) = region_marks(boxes, np.array([0.9]), heat, (512, 1024), scaled_shape=(256, 512))
    assert (mark.row, mark.col) == (200, 300)


def test_a_mark_serialises_to_plain_numbers():
    # numpy scalars on purpose, as the model gives them: to_dict must make them plain
    d = RegionMark(np.int64(5), 7, 12, np.float32(0.75)).to_dict()  # type: ignore[arg-type]
    assert d == {"row": 5, "col": 7, "radius": 12, "score": 0.75}


def test_the_brightest_point_baseline_finds_a_bright_disc():
    rr, cc = np.mgrid[0:256, 0:256]
    image = np.full((256, 256), 80.0)
    image[(rr - 180) ** 2 + (cc - 60) ** 2 < 15**2] = 250
    marks = brightest_point_marks(image, max_marks=3)
    assert len(marks) == 3
    assert (marks[0].row - 180) ** 2 + (marks[0].col - 60) ** 2 < 15**2
    assert marks[0].score >= marks[1].score >= marks[2].score


def test_froc_counts_false_marks_per_image_against_lesions_found():
    lesions = [[(50.0, 50.0, 10.0)], [(100.0, 100.0, 10.0)], []]
    marks = [
        [RegionMark(50, 52, 5, 0.9), RegionMark(200, 200, 5, 0.8)],
        [RegionMark(10, 10, 5, 0.7), RegionMark(101, 99, 5, 0.4)],
        [RegionMark(30, 30, 5, 0.6)],
    ]
    points = froc(marks, lesions)
    # thresholds 0.9, 0.8, 0.7, 0.6, 0.4: hits at 0.9 and 0.4, false marks otherwise
    expected = [(0, 0), (0, 0.5), (1 / 3, 0.5), (2 / 3, 0.5), (1, 0.5), (1, 1.0)]
    assert np.allclose(points, expected)
    assert sensitivity_at(points, 0.5) == pytest.approx(0.5)
    assert sensitivity_at(points, 1.0) == pytest.approx(1.0)
    steps = froc_steps(points)
    assert np.allclose(steps, [(0, 0), (0, 0.5), (1, 1.0)])
    for rate in (0.0, 0.3, 0.5, 0.9, 1.0, 2.0):
        assert sensitivity_at(steps, rate) == sensitivity_at(points, rate)


def test_a_lesion_hit_twice_counts_once():
    lesions = [[(50.0, 50.0, 10.0)]]
    marks = [[RegionMark(50, 50, 5, 0.9), RegionMark(52, 48, 5, 0.8)]]
    assert np.allclose(froc(marks, lesions)[-1], (0.0, 1.0))
