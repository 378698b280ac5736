"""Distinct moments: overlapping windows of one file fold into one span (non-maximum
suppression over time), without chaining strong moments through weak windows."""

from __future__ import annotations

from indexer.paging import MOMENT_MERGE_MARGIN, distinct_moments
from indexer.search import Hit


def _hit(file_id: int, start: float | None, score: float, seg: int = 1) -> Hit:
    end = None if start is None else start + 10.0
    return Hit(
        id=seg,
        score=score,
        file_id=file_id,
        path=f"/lib/{file_id}.wav",
        duration_s=60.0,
        format="WAV",
        start_s=start,
        end_s=end,
    )


def _spans(hits):
    return [(h.file_id, h.start_s, h.end_s, round(h.score, 3)) for h in hits]


def test_an_evenly_matching_stretch_is_one_moment_spanning_its_windows():
    hits = [_hit(1, 0.0, 0.80), _hit(1, 5.0, 0.79), _hit(1, 10.0, 0.78), _hit(1, 15.0, 0.77)]
    assert _spans(distinct_moments(hits)) == [(1, 0.0, 25.0, 0.8)]


def test_weak_windows_are_dropped_without_chaining_far_moments_together():
    weak = 0.80 - 2 * MOMENT_MERGE_MARGIN
    hits = [_hit(1, 0.0, 0.80), _hit(1, 5.0, weak), _hit(1, 10.0, weak), _hit(1, 15.0, weak), _hit(1, 20.0, 0.79)]
    # 5-15 and 15-25 fold away under the strong moments; 10-20 touches both and stays its own
    assert _spans(distinct_moments(hits)) == [(1, 0.0, 10.0, 0.8), (1, 20.0, 30.0, 0.79), (1, 10.0, 20.0, 0.7)]


def test_widened_moments_that_meet_are_joined_so_no_two_overlap():
    hits = [
        _hit(1, 10.0, 0.90, seg=3),
        _hit(1, 0.0, 0.89, seg=1),
        _hit(1, 15.0, 0.88, seg=4),
        _hit(1, 5.0, 0.87, seg=2),
    ]
    got = distinct_moments(hits)
    assert _spans(got) == [(1, 0.0, 25.0, 0.9)] and got[0].id == 3


def test_files_whole_file_hits_and_touching_windows_stay_apart():
    hits = [_hit(1, 0.0, 0.9), _hit(2, 0.0, 0.85), _hit(1, 10.0, 0.88), _hit(3, None, 0.87)]
    got = distinct_moments(hits)
    assert _spans(got) == [(1, 0.0, 10.0, 0.9), (1, 10.0, 20.0, 0.88), (3, None, None, 0.87), (2, 0.0, 10.0, 0.85)]
    assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
