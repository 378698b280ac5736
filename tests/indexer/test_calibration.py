"""Score calibration (manifest.score_calibration): relevance rises with the cosine and with how
clearly the query names a known sound; no label-space block means no peak term."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.models.manifest import ScoreCalibration


def test_relevance_is_a_logistic_of_cosine_and_query_peak():
    cal = ScoreCalibration(slope=10.0, intercept=-6.0, peak_slope=4.0, prior_dims=4)
    assert cal.relevance(0.5, 1.0) == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert cal.relevance(0.6, 0.5) > cal.relevance(0.4, 0.5)
    assert cal.relevance(0.4, 0.9) > cal.relevance(0.4, 0.3)
    assert 0.0 <= cal.relevance(-1e6) <= cal.relevance(1e6) <= 1.0  # no overflow at the extremes


def test_query_peak_reads_the_label_space_block_only():
    cal = ScoreCalibration(slope=1.0, intercept=0.0, peak_slope=1.0, prior_dims=4)
    focused = np.array([0.0, 0.6, 0.0, 0.0, 0.8, 0.0])  # all of the block on one class
    flat = np.array([0.25, 0.25, 0.25, 0.25, 0.0, 0.9])
    assert cal.query_peak(focused) == pytest.approx(1.0)
    assert cal.query_peak(flat) == pytest.approx(0.5)
    assert cal.query_peak(np.zeros(6)) == 0.0
    assert ScoreCalibration(slope=1.0, intercept=0.0).query_peak(focused) == 1.0
