"""ClapDataset: serving-identical features, reproducible augmentation, tar members, bad audio."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from indexer.audio.views import file_views  # noqa: E402
from indexer.errors import AudioError  # noqa: E402
from indexer.models.manifest import AudioFrontend  # noqa: E402
from indexer.text import TextTokenizer  # noqa: E402
from tests.factories import make_tokenizer  # noqa: E402
from training.data.captions import CaptionPolicy  # noqa: E402
from training.data.dataset import AugmentConfig, ClapDataset, make_collate  # noqa: E402
from training.data.records import ClipRecord  # noqa: E402
from training.data.sampler import EpochSampler  # noqa: E402

SMALL = dict(sample_rate=16000, clip_samples=16000, hop_length=160, n_fft=512, win_length=512, n_mels=32, f_max=8000)
FUSION = AudioFrontend(**SMALL, long_policy="fusion")
CROP = AudioFrontend(**SMALL, long_policy="center_crop")
RANDOM_VIEWS = AugmentConfig(random_crop=True, random_fusion=True)
WAVE_AUG = AugmentConfig(
    normalize_dbfs=-20.0, gain_db=(-6.0, 6.0), noise_snr_db=(5.0, 20.0), noise_prob=1.0, mix_prob=1.0
)


def write_audio(path: Path, seconds: float, sr: int, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    tone = 0.2 * np.sin(2 * np.pi * (200 + 400 * t / max(seconds, 1e-3)) * t)  # a sweep: every crop differs
    data = (tone[:, None] + 0.05 * rng.standard_normal((n, channels))).astype(np.float32)
    sf.write(path, data if channels > 1 else data[:, 0], sr)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "short": write_audio(folder / "short.wav", 0.6, 22050, channels=2, seed=1),
        "long": write_audio(folder / "long.flac", 3.3, 16000, seed=2),
        "long44": write_audio(folder / "long44.wav", 2.2, 44100, seed=3),
    }


def records_for(paths, captions=None) -> list[ClipRecord]:
    return [
        ClipRecord(str(p), (captions[k] if captions else f"clip number {k}",), ("tag",), source="m.jsonl", line=k + 1)
        for k, p in enumerate(paths)
    ]


@pytest.mark.parametrize("spec", [FUSION, CROP], ids=["fusion", "center_crop"])
def test_augment_off_is_bit_identical_to_serving(clips, spec):
    paths = list(clips.values())
    ds = ClapDataset(records_for(paths), spec, augment=AugmentConfig.off(), seed=3)
    for k, path in enumerate(paths):
        item = ds[k]
        views, _ = file_views(path, spec)
        assert item["features"].dtype == torch.float32
        assert np.array_equal(item["features"].numpy(), views.features), path.name
        assert bool(item["is_longer"]) == views.is_longer and not item["substituted"]
        assert item["caption"] == f"clip number {k}" and item["index"] == k
    assert ds[1]["features"].shape == ((4 if spec is FUSION else 1), spec.chunk_frames, 32)
    # the whole-waveform path (taken for waveform augmentation) gives the same samples
    unity = AugmentConfig(random_crop=False, random_fusion=False, gain_db=(0.0, 0.0))
    assert unity.needs_waveform
    same = ClapDataset(records_for(paths), spec, augment=unity)
    for k in range(len(paths)):
        assert np.array_equal(same[k]["features"].numpy(), ds[k]["features"].numpy())


@pytest.mark.parametrize("spec", [FUSION, CROP], ids=["fusion", "center_crop"])
def test_random_views_depend_only_on_seed_epoch_and_index(clips, spec):
    records = records_for([clips["short"], clips["long"]])
    ds = ClapDataset(records, spec, augment=RANDOM_VIEWS, seed=7)
    first = ds[1]["features"].numpy()
    assert np.array_equal(first, ClapDataset(records, spec, augment=RANDOM_VIEWS, seed=7)[1]["features"].numpy())
    assert np.array_equal(first, ds[(0, 1)]["features"].numpy())  # (epoch, index) keys
    epochs = []
    for epoch in range(1, 4):
        ds.set_epoch(epoch)
        epochs.append(ds[1]["features"].numpy())
    assert not any(np.array_equal(first, other) for other in epochs)
    ds.set_epoch(0)
    assert np.array_equal(first, ds[1]["features"].numpy())
    # short clips have nothing to choose: identical to serving in every epoch
    assert np.array_equal(ds[0]["features"].numpy(), file_views(clips["short"], spec)[0].features)


def test_random_crops_and_chunks_stay_in_range():
    for spec in (FUSION, CROP):
        ds = ClapDataset(records_for(["unused.wav"]), spec, augment=RANDOM_VIEWS)
        for num_samples in (16001, 16160, 16500, 33000, 52800):
            positions = num_samples // spec.hop_length + 1 - spec.chunk_frames + 1
            thirds = np.array_split(np.arange(positions), 3)
            seen = set()
            for seed in range(200):
                choice = ds.view_chooser(np.random.default_rng(seed))(num_samples)
                if spec is CROP:
                    assert 0 <= choice["crop_start"] <= num_samples - spec.clip_samples
                    seen.add(choice["crop_start"])
                elif positions > 1:
                    for start, third in zip(choice["fusion_starts"], thirds):
                        assert (start in third) if len(third) else start == 0
                    seen.add(choice["fusion_starts"])
                else:
                    assert choice == {}
            if spec is CROP or positions > 3:
                assert len(seen) > 1
            assert ds.view_chooser(np.random.default_rng(0))(16000) == {}


def test_waveform_augmentation_is_reproducible(clips):
    records = records_for([clips["short"], clips["long"], clips["long44"]], ["A dog barks.", "Rain", "A car"])
    ds = ClapDataset(records, FUSION, augment=WAVE_AUG, seed=11)
    item = ds[0]
    assert np.array_equal(item["features"].numpy(), ds[0]["features"].numpy())
    assert np.isfinite(item["features"].numpy()).all()
    assert item["caption"].startswith("A dog barks and ") and item["caption"] in {
        "A dog barks and rain",
        "A dog barks and a car",
    }
    serving = file_views(clips["short"], FUSION)[0].features
    assert not np.array_equal(item["features"].numpy(), serving)
    ds.set_epoch(1)
    assert not np.array_equal(item["features"].numpy(), ds[0]["features"].numpy())


def _tar_with(path: Path, members: dict[str, Path]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, source in members.items():
            tar.add(source, arcname=name)
    return path


def test_tar_members_give_the_same_features_as_files(clips, tmp_path):
    shard = _tar_with(tmp_path / "000000.tar", {"a.flac": clips["long"], "dir/b.wav": clips["short"]})
    files = records_for([clips["long"], clips["short"]])
    members = records_for([f"{shard}#a.flac", f"{shard}#dir/b.wav"])
    for augment in (AugmentConfig.off(), RANDOM_VIEWS, WAVE_AUG):
        by_file = ClapDataset(files, FUSION, augment=augment, seed=5)
        by_tar = ClapDataset(members, FUSION, augment=augment, seed=5)
        for k in range(2):
            a, b = by_file[k], by_tar[k]
            assert np.array_equal(a["features"].numpy(), b["features"].numpy())
            assert a["caption"] == b["caption"] and not b["substituted"]


def test_bad_audio_is_substituted_not_raised(clips, tmp_path, caplog):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file" * 20)
    shard = _tar_with(tmp_path / "s.tar", {"ok.flac": clips["long"]})
    records = records_for([clips["short"], broken, tmp_path / "missing.wav", f"{shard}#nope.flac", clips["long"]])
    ds = ClapDataset(records, CROP, augment=RANDOM_VIEWS, seed=2)
    with caplog.at_level(logging.WARNING, logger="training.data.dataset"):
        item = ds[1]
        ds[1]
    assert item["substituted"] and item["index"] == 1 and item["source_index"] == 4
    assert item["caption"] == "clip number 4"  # the caption travels with the audio
    assert np.array_equal(item["features"].numpy(), ds[4]["features"].numpy())
    assert ds.failures == 6
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3 and "m.jsonl:2" in warnings[0] and "m.jsonl:4" in warnings[2]
    with pytest.raises(AudioError):
        ClapDataset(records, CROP, on_error="fail")[1]
    hopeless = ClapDataset(records[1:4], CROP)
    with pytest.raises(RuntimeError, match="3 items from 0 on failed"):
        hopeless[0]


def test_collate_and_dataloader_workers(clips, tmp_path):
    tokenizer = TextTokenizer(make_tokenizer(tmp_path) / "tokenizer.json", max_length=77, pad_token_id=1)
    captions = ["a dog barks", "rain falling on a tin roof while a man speaks", "thunder"]
    records = records_for([clips["short"], clips["long"], clips["long44"]], captions)
    ds = ClapDataset(records, FUSION, augment=RANDOM_VIEWS, seed=1, caption_policy=CaptionPolicy(random_caption=False))
    collate = make_collate(tokenizer)

    def batches(workers: int):
        sampler = EpochSampler(len(ds), seed=4, drop_last=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=collate, num_workers=workers)
        return next(iter(loader))

    batch = batches(0)
    assert batch["features"].shape == (3, 4, FUSION.chunk_frames, 32)
    assert batch["is_longer"].dtype == torch.bool and batch["is_longer"].shape == (3,)
    order = batch["index"].tolist()
    assert sorted(order) == [0, 1, 2] and batch["captions"] == [captions[k] for k in order]
    assert batch["is_longer"].tolist() == [k != 0 for k in order]
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == mask.dtype == torch.int64 and ids.shape == mask.shape
    lengths = mask.sum(1)
    assert lengths.max() == ids.shape[1] and len(set(lengths.tolist())) == 3
    assert (ids[mask == 0] == 1).all() and batch["substituted"].tolist() == [False] * 3
    parallel = batches(2)
    for key in ("features", "input_ids", "attention_mask", "index"):
        assert torch.equal(batch[key], parallel[key]), key
