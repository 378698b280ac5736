"""The unit of training data: one audio clip with its texts, wherever it was listed.

Every reader (our JSONL/CSV manifests, AudioCaps, Clotho, WebDataset shards) produces the same
:class:`ClipRecord`, so the dataset, the caption policy and evaluation never care where a clip came
from. Each record remembers its manifest file and line, so a bad clip met hours into a run can be
reported as ``manifest.jsonl:1234`` instead of an anonymous index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.errors import ClapSearchError

# Separator between a shard path and a member name in ``ClipRecord.audio``.
TAR_MEMBER_SEP = ".tar#"


@dataclass(frozen=True)
class ClipRecord:
    """One clip and what describes it.

    ``audio`` is a file path, or ``"path/to/shard.tar#member_name"`` for a member of a tar shard.
    ``captions`` are full sentences; ``tags`` are keywords (they can become a caption through
    keyword-to-caption augmentation); ``labels`` are class names for zero-shot and linear probes.
    """

    audio: str
    captions: tuple[str, ...]
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    split: str | None = None
    source: str = ""
    line: int = 0
    licence: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def where(self) -> str:
        """``source:line`` for messages (just the audio reference when the source is unknown)."""
        return f"{self.source}:{self.line}" if self.source else self.audio

    @property
    def tar_member(self) -> tuple[str, str] | None:
        """``(shard_path, member_name)`` when the audio lives inside a tar shard, else None."""
        return split_tar_ref(self.audio)


def split_tar_ref(audio: str) -> tuple[str, str] | None:
    """Split ``"a/b.tar#member"`` into ``("a/b.tar", "member")``; None for plain paths.

    Only ``.tar#`` counts as the separator, so a file that merely has ``#`` in its name stays a
    plain path.
    """
    at = audio.find(TAR_MEMBER_SEP)
    if at < 0:
        return None
    cut = at + len(TAR_MEMBER_SEP) - 1
    return audio[:cut], audio[cut + 1:]


def tar_ref(shard: str, member: str) -> str:
    return f"{shard}#{member}"


@dataclass(frozen=True)
class ManifestIssue:
    """A line of a manifest that could not become a record, and why."""

    source: str
    line: int          # 1-based line/row/sample number in ``source``; 0 for the file as a whole
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


class ManifestError(ClapSearchError):
    """A training manifest is unusable (wrong columns), or a bad line met with ``on_error="fail"``.

    Distinct from :class:`indexer.errors.ManifestError`, which is about a *model* folder's
    manifest.json; this one is about training data listings.
    """

    code = "data.manifest"

    def __init__(self, issue: ManifestIssue):
        self.issue = issue
        super().__init__(str(issue))
