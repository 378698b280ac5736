"""Epoch-seeded, DDP-sharded, resumable item order.

The order of epoch ``e`` is a numpy permutation drawn from ``SeedSequence([seed, e])``: it does
not depend on torch's global RNG, on how many ranks exist beyond the sharding itself, or on how
the previous epochs went. So a run resumed from a saved ``(epoch, position)`` replays exactly the
items an uninterrupted run would have seen.

Sharding: rank ``r`` takes ``perm[r::world_size]`` after trimming the permutation to a multiple of
``world_size`` (``drop_last=True``: the tail is dropped; ``False``: the permutation's head is
repeated to fill the last round), so every rank sees the same number of items and DDP ranks
never wait on each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Yields item indices (or ``(epoch, index)`` with ``yield_epoch=True``, for datasets held by
    persistent workers that never see ``set_epoch``)."""

    def __init__(
        self,
        num_items: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        yield_epoch: bool = False,
    ):
        if num_items < 1:
            raise ValueError("num_items must be positive")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {rank} and {world_size}")
        if drop_last and num_items < world_size:
            raise ValueError(f"{num_items} items cannot feed {world_size} ranks with drop_last")
        self.num_items, self.seed, self.shuffle = int(num_items), int(seed), shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.yield_epoch = yield_epoch
        self.epoch = 0
        self.start = 0  # items of this rank to skip at the start of this epoch
        self.yielded = 0  # items handed out by the current iterator (incl. the skipped start)

    @property
    def per_rank(self) -> int:
        """Items each rank sees in a full epoch."""
        if self.drop_last:
            return self.num_items // self.world_size
        return -(-self.num_items // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (call before iterating each epoch)."""
        self.epoch, self.start, self.yielded = int(epoch), 0, 0

    def set_start(self, position: int) -> None:
        """Resume this epoch after its first ``position`` items of this rank."""
        if not 0 <= position <= self.per_rank:
            raise ValueError(f"position {position} outside [0, {self.per_rank}]")
        self.start = self.yielded = int(position)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's full order for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        total = self.per_rank * self.world_size
        if total > order.shape[0]:
            order = np.concatenate([order, order[: total - order.shape[0]]])
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator:
        self.yielded = self.start
        for index in self.indices()[self.start :].tolist():
            self.yielded += 1
            yield (self.epoch, index) if self.yield_epoch else index

    def __len__(self) -> int:
        return self.per_rank - self.start

    def state_dict(self, position: int | None = None) -> dict:
        """Where to resume. ``position`` = items of this rank already *consumed* this epoch;
        default: items handed out so far, which a DataLoader's prefetching makes run ahead of
        training, so pass ``batches_done * batch_size`` when using one."""
        position = self.yielded if position is None else int(position)
        return {
            "epoch": self.epoch,
            "position": position,
            "seed": self.seed,
            "num_items": self.num_items,
            "world_size": self.world_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; refuses one saved with another seed, size or sharding, which
        would silently replay a different order."""
        for key in ("seed", "num_items", "world_size", "shuffle", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]!r}, this sampler "
                    f"{getattr(self, key)!r}: the order would not replay"
                )
        self.epoch = int(state["epoch"])
        self.set_start(int(state["position"]))
