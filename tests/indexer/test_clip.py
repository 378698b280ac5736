"""The 10 s rule: repeat-padding, deterministic centre crop, fixed fusion chunks, global view."""

import numpy as np
import pytest

from indexer.audio.clip import fusion_chunk_starts, repeat_pad, waveform_views
from indexer.audio.frontend import log_mel
from indexer.models.manifest import AudioFrontend

UNFUSED = AudioFrontend(mel_scale="slaney", mel_norm="slaney", long_policy="center_crop")
FUSED = AudioFrontend(mel_scale="htk", mel_norm=None, long_policy="fusion")


def _noise(n, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


def test_repeat_pad_tiles_then_zero_pads():
    x = np.arange(1, 4, dtype=np.float32)  # 3 samples into 10
    np.testing.assert_array_equal(repeat_pad(x, 10), [1, 2, 3, 1, 2, 3, 1, 2, 3, 0])


@pytest.mark.parametrize("spec,channels", [(UNFUSED, 1), (FUSED, 4)])
def test_short_clip_is_repeat_padded(spec, channels):
    x = _noise(144_000)
    views = waveform_views(x, spec)
    assert views.features.shape == (channels, 1001, 64)
    assert not views.is_longer
    expected = log_mel(np.concatenate([x, x, x, np.zeros(48_000, np.float32)]), spec)
    for c in range(channels):
        np.testing.assert_array_equal(views.features[c], expected)


def test_long_unfused_clip_takes_the_centre():
    x = _noise(1_200_000, seed=1)
    views = waveform_views(x, UNFUSED)
    assert views.crop_start == 360_000  # (1.2M - 480k) // 2, the golden fixture's choice
    np.testing.assert_array_equal(views.features[0], log_mel(x[360_000:840_000], UNFUSED))


@pytest.mark.parametrize("samples,starts", [(1_200_000, (250, 751, 1251)), (2_928_000, (850, 2551, 4251))])
def test_fusion_chunk_positions_are_fixed(samples, starts):
    assert fusion_chunk_starts(samples // 480 + 1, 1001) == starts
    x = _noise(samples, seed=2)
    first, second = waveform_views(x, FUSED), waveform_views(x, FUSED)
    assert first.is_longer and first.fusion_starts == starts
    np.testing.assert_array_equal(first.features, second.features)
    mel = log_mel(x, FUSED)
    for k, start in enumerate(starts):
        np.testing.assert_allclose(first.features[k + 1], mel[start : start + 1001], atol=1e-5)


def test_fusion_empty_thirds_fall_back_to_zero():
    assert fusion_chunk_starts(1002, 1001) == (0, 1, 0)
    assert fusion_chunk_starts(1003, 1001) == (0, 1, 2)


def test_barely_longer_clip_is_not_longer():
    x = _noise(480_240, seed=3)  # same frame count as exactly 10 s
    views = waveform_views(x, FUSED)
    assert not views.is_longer
    mel = log_mel(x, FUSED)
    assert mel.shape[0] == 1001
    for c in range(4):
        np.testing.assert_array_equal(views.features[c], mel)


def test_global_view_matches_torch_bilinear_resize():
    torch = pytest.importorskip("torch")
    x = _noise(2_928_000, seed=4)
    mel = log_mel(x, FUSED)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(mel)[None, None], size=[1001, 64], mode="bilinear", align_corners=False, antialias=False
    )[0, 0].numpy()
    np.testing.assert_allclose(waveform_views(x, FUSED).features[0], ref, atol=1e-5)
