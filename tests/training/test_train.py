"""The training loop on a toy corpus where text and audio are related (tests/training/toy.py)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.helpers import run_captured, wait_until  # noqa: E402
from tests.training.toy import write_config, write_corpus  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.loss import contrastive_loss, lr_at  # noqa: E402
from training.train import train  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    write_corpus(folder, per_kind=6)
    write_corpus(folder, per_kind=3, seed=1, split="val", name="val.jsonl")
    write_config(folder)
    return folder


def toy_config(toy: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(
        model=str(toy / "toy-config.json"),
        train_manifest=str(toy / "train.jsonl"),
        out_dir=str(out),
        batch_size=8,
        max_steps=6,
        lr=3e-3,
        warmup_steps=2,
        workers=0,
        log_every=1,
        eval_every=100,
        save_every=3,
        progress=False,
        augment={"enabled": True, "gain_db": [-6, 6], "noise_prob": 0.5, "noise_snr_db": [10, 30]},
    )
    values.update(overrides)
    return TrainConfig.model_validate(values)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- pure pieces
def test_contrastive_loss_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # a2t logits (scale 2): row0 [2, 1.2], row1 [0, 1.6]; t2a (scale 1): row0 [1, 0], row1 [0.6, 0.8]
    ce = lambda logits, i: -logits[i] + math.log(sum(math.exp(x) for x in logits))  # noqa: E731
    expected = (ce([2, 1.2], 0) + ce([0, 1.6], 1)) / 4 + (ce([1, 0], 0) + ce([0.6, 0.8], 1)) / 4
    got = contrastive_loss(a, t, torch.tensor(2.0), torch.tensor(1.0))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    kw = dict(base_lr=1.0, warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(9, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert lr_at(14, **kw) == pytest.approx(0.1) and lr_at(99, **kw) == pytest.approx(0.1)
    assert all(lr_at(s, **kw) >= lr_at(s + 1, **kw) for s in range(4, 20))


def test_configure_optimizers_splits_decay_and_leaves_frozen_parts_out():
    from training.models.factory import create_model

    model = create_model("micro", seed=0)
    optimizer = model.configure_optimizers(0.2, {"audio": 1.0, "text": 2.0, "heads": 3.0}, frozen={"text"})
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"audio", "audio/no_decay", "heads", "heads/no_decay"}
    assert all(p.ndim >= 2 for p in groups["heads"]["params"]) and groups["heads"]["weight_decay"] == 0.2
    assert any(p is model.logit_scale_a for p in groups["heads/no_decay"]["params"])
    assert groups["heads/no_decay"]["weight_decay"] == 0.0 and groups["heads"]["base_lr"] == 3.0
    assert not any(p.requires_grad for p in model.text.parameters())


def test_one_augmentation_config_validated_by_the_train_config():
    from pydantic import ValidationError

    from training.train_config import AugmentConfig

    cfg = TrainConfig(train_manifest="x.jsonl", augment={"noise_colors": ["pink"], "gain_db": [-3, 3]})
    assert cfg.augment == AugmentConfig(noise_colors=("pink",), gain_db=(-3.0, 3.0))
    for bad in ({"noise_colors": ["blue"]}, {"gain_db": [3, -3]}, {"no_such_field": 1}):
        with pytest.raises(ValidationError):
            TrainConfig(train_manifest="x.jsonl", augment=bad)


# ----------------------------------------------------------------------------- the loop
def test_loss_goes_down_and_validation_improves(toy, tmp_path):
    cfg = toy_config(
        toy,
        tmp_path / "run",
        max_steps=30,
        eval_every=30,
        val_manifest=str(toy / "val.jsonl"),
        augment={"enabled": False},
    )
    state = train(cfg)
    rows = [m for m in metrics(tmp_path / "run") if "loss" in m]
    first, last = np.mean([m["loss"] for m in rows[:3]]), np.mean([m["loss"] for m in rows[-3:]])
    assert last < 0.75 * first, (first, last)
    assert all(0 <= m["data_wait_share"] < 1 and m["clips_per_s"] > 0 for m in rows)
    evals = [m["eval"] for m in metrics(tmp_path / "run") if "eval" in m]
    # 12 val clips of 4 kinds: chance text->audio R@1 is 1/12; a model that learnt the kinds ranks
    # a clip of the right kind first nearly always.
    assert evals[-1]["text_to_audio"]["R@5"] > 0.6
    assert state.best_step == 30 and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_resume_continues_bit_for_bit(toy, tmp_path):
    whole = train(toy_config(toy, tmp_path / "whole"))
    part = train(toy_config(toy, tmp_path / "part"), stop_after_steps=3)  # "killed" after step 3
    assert part.step == 3
    resumed = train(toy_config(toy, tmp_path / "part"))  # same command again
    assert whole.step == resumed.step == 6
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    losses = lambda out: [m["loss"] for m in metrics(out) if "loss" in m]  # noqa: E731
    assert losses(tmp_path / "whole") == losses(tmp_path / "part")


def test_frozen_text_tower_stays_put_and_lr_groups_apply(toy, tmp_path):
    from training.models.factory import create_model

    cfg = toy_config(toy, tmp_path / "lit", max_steps=3, freeze_text=True, lr_heads=1e-2, save_every=1)
    train(cfg.model_copy(update={"max_steps": 1}))  # the initial weights after one step
    before = create_model(pretrained=tmp_path / "lit" / "checkpoints" / "last.pt")
    train(cfg)
    after = create_model(pretrained=tmp_path / "lit" / "checkpoints" / "last.pt")
    for (name, p0), p1 in zip(before.text.named_parameters(), after.text.parameters()):
        assert torch.equal(p0, p1), name
    assert not torch.equal(before.audio_projection.linear1.weight, after.audio_projection.linear1.weight)
    assert not torch.equal(before.text_projection.linear1.weight, after.text_projection.linear1.weight)


def test_bad_manifest_lines_are_skipped_with_their_line_numbers_or_fatal(toy, tmp_path, caplog):
    lines = (toy / "train.jsonl").read_text().splitlines()
    bad = [
        json.dumps({"audio": str(toy / "missing.wav"), "caption": "gone"}),
        json.dumps({"audio": str(toy / json.loads(lines[0])["audio"]), "caption": ""}),
        "{not json",
    ]
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(
        "\n".join(
            [*(json.dumps({**json.loads(x), "audio": str(toy / json.loads(x)["audio"])}) for x in lines[:16]), *bad]
        )
        + "\n"
    )
    with caplog.at_level("WARNING"):
        state = train(toy_config(toy, tmp_path / "skip", train_manifest=str(manifest), max_steps=2))
    assert state.step == 2
    assert "bad.jsonl:17" in caplog.text and "bad.jsonl:18" in caplog.text and "bad.jsonl:19" in caplog.text
    from indexer.errors import DataManifestError

    with pytest.raises(DataManifestError, match="bad.jsonl:17"):
        train(toy_config(toy, tmp_path / "fail", train_manifest=str(manifest), on_bad_record="fail"))


def test_undecodable_audio_mid_run_does_not_stop_training(toy, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    lines = [json.loads(x) for x in (toy / "train.jsonl").read_text().splitlines()]
    lines = [{**x, "audio": str(toy / x["audio"])} for x in lines]
    lines.insert(3, {"audio": str(corrupt), "caption": "a corrupt file"})
    manifest = tmp_path / "with-corrupt.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    state = train(toy_config(toy, tmp_path / "run", train_manifest=str(manifest), max_steps=4))
    assert state.step == 4


# ----------------------------------------------------------------------------- real processes
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.cli", *args]


def test_kill_dash_nine_then_rerun_gives_the_uninterrupted_weights(toy, tmp_path):
    common = ["train", "--model", str(toy / "toy-config.json"), "--train", str(toy / "train.jsonl")]
    common += "--batch-size 8 --max-steps 24 --lr 3e-3 --workers 2 --save-every 4".split()
    common += "--set warmup_steps=2 --set log_every=1 --quiet".split()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    finish = dict(check=True, env=env, cwd=REPO, capture_output=True, timeout=600)
    subprocess.run(_cli(*common, "--out", str(tmp_path / "whole")), **finish)
    victim = subprocess.Popen(
        _cli(*common, "--out", str(tmp_path / "killed")),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    metrics_file = tmp_path / "killed" / "metrics.jsonl"
    logged = lambda: metrics_file.is_file() and sum(1 for _ in metrics_file.open()) >= 10  # noqa: E731
    if wait_until(lambda: victim.poll() is not None or logged(), 300, every_s=0.05) and victim.poll() is None:
        os.killpg(victim.pid, signal.SIGKILL)  # kill it between checkpoints
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["state"].step < 24
    subprocess.run(_cli(*common, "--out", str(tmp_path / "killed")), **finish)
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_ddp_two_processes(toy, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, *"-m torch.distributed.run --nproc-per-node 2 --master-port 29533 -m training.cli".split()]
    cmd += ["train", "--model", str(toy / "toy-config.json"), "--train", str(toy / "train.jsonl"), "--out", str(out)]
    cmd += "--batch-size 4 --max-steps 4 --workers 0 --set log_every=1 --quiet".split()
    done = run_captured(cmd, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(out / "checkpoints" / "last.pt")["state"]
    assert state.step == 4 and state.samples_seen == 4 * 4 * 2  # steps x per-rank batch x ranks
    assert len([m for m in metrics(out) if "loss" in m]) == 4  # only rank 0 writes


def test_trained_checkpoint_exports_and_scores_the_same_in_onnx_and_torch(toy, tmp_path):
    """best.pt -> model folder (the export's own parity check runs) -> ``clap-train evaluate`` on the
    ONNX folder and on the checkpoint: identical metrics; the runtime loads the folder."""
    from indexer.models.encoder import ClapEncoder
    from training import cli
    from training.models.factory import create_model

    out = tmp_path / "run"
    train(toy_config(toy, out, max_steps=8, val_manifest=str(toy / "val.jsonl"), eval_every=4))
    assert (
        cli.main(["export", str(out / "checkpoints" / "best.pt"), str(tmp_path / "model"), "--variants", "fp32,int8"])
        == 0
    )
    encoder = ClapEncoder.open(tmp_path / "model")
    assert encoder.manifest.provenance.source_format == "trained"
    assert encoder.manifest.audio_frontend.sample_rate == 16_000  # the config's front end travels along
    wav = toy / json.loads((toy / "val.jsonl").read_text().splitlines()[0])["audio"]
    model = create_model(pretrained=out / "checkpoints" / "best.pt")
    views, _ = encoder.views_from_file(wav)
    with torch.inference_mode():
        eager = model.encode_audio(torch.from_numpy(views.features[None]), torch.tensor([views.is_longer]))
    assert np.abs(encoder.embed_views([views])[0] - eager.numpy()[0]).max() < 1e-5

    reports = {}
    for source in (["--model", str(tmp_path / "model")], ["--checkpoint", str(out / "checkpoints" / "best.pt")]):
        target = tmp_path / f"{source[0][2:]}.json"
        args = ["evaluate", *source, "--manifest", str(toy / "val.jsonl"), "--split", "val", "--task", "retrieval"]
        assert cli.main([*args, "--out", str(target)]) == 0
        reports[source[0]] = json.loads(target.read_text())["results"][0]["metrics"]
    assert reports["--model"] == reports["--checkpoint"]


def test_bf16_autocast_runs_on_cpu(toy, tmp_path):
    state = train(toy_config(toy, tmp_path / "bf16", max_steps=2, precision="bf16"))
    losses = [m["loss"] for m in metrics(tmp_path / "bf16") if "loss" in m]
    assert state.step == 2 and all(np.isfinite(losses))


def _first_step_then_run(cfg: TrainConfig, **first_step):
    """The model after step 1 (the towers as initialised), the whole run's state, the model after it."""
    from training.models.factory import create_model

    last = Path(cfg.out_dir) / "checkpoints" / "last.pt"
    train(cfg.model_copy(update={"max_steps": 1, **first_step}))
    start = create_model(pretrained=last)
    state = train(cfg)
    return start, state, create_model(pretrained=last)


def _cached_config(toy: Path, out: Path, **overrides) -> TrainConfig:
    """A run on cached tower outputs, validated on the toy's val split."""
    return toy_config(
        toy, out, cache_towers=True, batch_size=12, lr=3e-3, val_manifest=str(toy / "val.jsonl"), **overrides
    )


def test_cached_towers_train_the_heads_and_export(toy, tmp_path):
    """Both towers locked: heads trained on cached tower outputs of augmented views; the towers'
    weights stay bit-identical, validation improves on the toy task, best.pt exports."""
    from training import cli

    cfg = _cached_config(
        toy, tmp_path / "cached", freeze_text=True, cache_views=3, max_steps=150, eval_every=50, log_every=10
    )
    start, state, end = _first_step_then_run(cfg, eval_every=1)  # the second run reuses tower_cache.pt
    for part in ("audio", "text"):
        for (name, p0), p1 in zip(getattr(start, part).state_dict().items(), getattr(end, part).state_dict().values()):
            assert torch.equal(p0, p1), name
    evals = [m["eval"] for m in metrics(tmp_path / "cached") if "eval" in m]
    assert evals[-1]["text_to_audio"]["R@5"] > 0.6 and state.best_metric >= evals[0]["mean_recall"]
    assert (
        cli.main(
            ["export", str(tmp_path / "cached" / "checkpoints" / "best.pt"), str(tmp_path / "m"), "--variants", "fp32"]
        )
        == 0
    )


def test_cached_audio_with_a_fine_tuned_text_tower(toy, tmp_path):
    cfg = _cached_config(toy, tmp_path / "text", cache_views=2, max_steps=20, eval_every=10)
    start, _, end = _first_step_then_run(cfg)
    assert all(torch.equal(a, b) for a, b in zip(start.audio.state_dict().values(), end.audio.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(start.text.parameters(), end.text.parameters()))
