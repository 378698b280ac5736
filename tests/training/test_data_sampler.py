"""EpochSampler: per-epoch permutations, equal DDP shards, exact mid-epoch resume."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.data.sampler import EpochSampler  # noqa: E402


def run(sampler: EpochSampler, epochs) -> list[list[int]]:
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def test_each_epoch_is_a_seeded_permutation():
    a, b = run(EpochSampler(50, seed=1), range(3)), run(EpochSampler(50, seed=1), range(3))
    assert a == b
    assert all(sorted(order) == list(range(50)) for order in a)
    assert a[0] != a[1] != a[2]
    assert run(EpochSampler(50, seed=2), [0]) != a[:1]
    assert run(EpochSampler(5, seed=1, shuffle=False), [3]) == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize("drop_last, per_rank", [(True, 3), (False, 4)])
def test_ranks_get_equal_disjoint_shards(drop_last, per_rank):
    shards = [run(EpochSampler(10, seed=0, rank=r, world_size=3, drop_last=drop_last), [2])[0] for r in range(3)]
    assert [len(s) for s in shards] == [per_rank] * 3
    assert len(EpochSampler(10, seed=0, rank=1, world_size=3, drop_last=drop_last)) == per_rank
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == 9  # disjoint; the permutation's tail is dropped
    else:
        assert set(flat) == set(range(10))  # every item, two repeated to even the ranks
    full = EpochSampler(10, seed=0)
    full.set_epoch(2)
    order = list(full)
    padded = (order + order)[: 3 * per_rank]
    assert shards == [padded[r::3] for r in range(3)]
    with pytest.raises(ValueError):
        EpochSampler(10, seed=0, rank=3, world_size=3)


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_mid_epoch_replays_the_uninterrupted_order(world_size):
    def make():
        return EpochSampler(23, seed=9, rank=world_size - 1, world_size=world_size)

    reference = run(make(), range(3))
    sampler = make()
    seen = run(sampler, [0])
    sampler.set_epoch(1)
    it = iter(sampler)
    seen.append([next(it) for _ in range(5)])
    state = sampler.state_dict()
    assert state["epoch"] == 1 and state["position"] == 5

    resumed = make()
    resumed.load_state_dict(state)
    assert len(resumed) == len(reference[1]) - 5
    seen[1] += list(resumed)
    seen += run(resumed, [2])
    assert seen == reference


def test_resume_with_a_dataloader_counts_consumed_batches():
    data = list(range(100, 130))
    reference = [
        b.tolist()
        for b in torch.utils.data.DataLoader(data, batch_size=4, sampler=_at_epoch(EpochSampler(30, seed=3), 4))
    ]
    sampler = _at_epoch(EpochSampler(30, seed=3), 4)
    loader = torch.utils.data.DataLoader(data, batch_size=4, sampler=sampler, num_workers=0)
    done = []
    for step, batch in enumerate(loader):
        done.append(batch.tolist())
        if step == 2:
            state = sampler.state_dict(position=(step + 1) * 4)
            break
    resumed = EpochSampler(30, seed=3)
    resumed.load_state_dict(state)
    done += [b.tolist() for b in torch.utils.data.DataLoader(data, batch_size=4, sampler=resumed)]
    assert done == reference


def _at_epoch(sampler: EpochSampler, epoch: int) -> EpochSampler:
    sampler.set_epoch(epoch)
    return sampler


def test_state_from_another_configuration_is_refused_and_epoch_keys():
    state = EpochSampler(10, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        EpochSampler(10, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="num_items"):
        EpochSampler(11, seed=1).load_state_dict(state)
    sampler = EpochSampler(4, seed=1, yield_epoch=True)
    sampler.set_epoch(6)
    keys = list(sampler)
    assert {e for e, _ in keys} == {6} and sorted(i for _, i in keys) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        sampler.set_start(5)
