"""The detection confusion matrix on a scene counted by hand."""

from __future__ import annotations

import numpy as np

from ssdlite.metrics import ImageDetections, ImageGroundTruth, confusion_matrix


def test_counts_hits_confusions_misses_and_false_alarms():
    truth = ImageGroundTruth(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70], [80, 80, 90, 90]], dtype=float),
        np.array([1, 1, 2, 2, 1]),
        np.array([False, False, False, False, True]),
        np.zeros(5, bool),
    )
    found = ImageDetections(
        np.array(
            [
                [0, 0, 10, 10],  # class 1 as 1
                [1, 1, 10, 10],  # duplicate of the box above: a false alarm
                [20, 20, 30, 30],  # class 1 taken for 2
                [40, 40, 50, 50],  # class 2 as 2
                [100, 100, 110, 110],  # nothing there: false alarm
                [80, 80, 90, 90],  # on the difficult box: not counted
                [60, 60, 70, 70],  # below the score threshold: box 3 is missed
            ],
            dtype=float,
        ),
        np.array([0.9, 0.8, 0.9, 0.9, 0.5, 0.9, 0.1]),
        np.array([1, 1, 2, 2, 1, 1, 2]),
    )
    matrix = confusion_matrix([truth], [found], num_classes=2, score_threshold=0.25)
    expected = np.array(
        [
            [1, 1, 0],  # true class 1: once right, once taken for 2
            [0, 1, 1],  # true class 2: once right, once missed
            [2, 0, 0],  # background: two false alarms of class 1
        ]
    )
    np.testing.assert_array_equal(matrix, expected)


def test_empty_image_and_no_detections():
    empty = ImageGroundTruth(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool))
    alarm = ImageDetections(np.array([[0.0, 0, 5, 5]]), np.array([0.9]), np.array([2]))
    one = ImageGroundTruth(np.array([[0.0, 0, 5, 5]]), np.array([1]), np.zeros(1, bool), np.zeros(1, bool))
    none = ImageDetections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    matrix = confusion_matrix([empty, one], [alarm, none], num_classes=2)
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_a_box_detected_as_two_classes_counts_in_both_columns():
    """A look-alike's second box on the same object shows as a confusion, not as a false alarm on background."""
    truth = ImageGroundTruth(np.array([[0.0, 0, 10, 10]]), np.array([1]), np.zeros(1, bool), np.zeros(1, bool))
    both = ImageDetections(np.array([[0.0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 8]]), np.array([0.9, 0.8, 0.7]), np.array([2, 1, 2]))
    matrix = confusion_matrix([truth], [both], num_classes=2)
    # As class 1 and as class 2 once each; the second class-2 box at the same object is a duplicate.
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 0, 0], [0, 1, 0]])
