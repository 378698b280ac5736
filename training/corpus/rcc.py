"""Read Qt binary resource files (``.rcc``), because gcompris-qt-data ships its sounds only there.

Why our own reader: Qt's ``rcc`` tool can only create these files, and installing Qt to unpack a
few hundred ogg files would be heavy. The format is small and stable:

* header: ``b"qres"``, then big-endian u32 ``version``, ``tree_offset``, ``data_offset``,
  ``names_offset`` and (version >= 3) a u32 ``flags``;
* tree: fixed-size nodes (14 bytes; 22 from version 2, which appends a u64 mtime). Node 0 is the
  root. Each node: u32 name offset, u16 flags, then for directories (flag 2) u32 child count and
  u32 index of the first child; for files u16 country, u16 language and u32 data offset;
* names: u16 length in UTF-16 code units, u32 hash, then UTF-16BE text;
* data: u32 size then the bytes; flag 1 means zlib (a u32 uncompressed size precedes the zlib
  stream), flag 4 means zstd (decoded only when the ``zstandard`` module is installed).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"qres"
FLAG_COMPRESSED = 1
FLAG_DIRECTORY = 2
FLAG_COMPRESSED_ZSTD = 4


class RccError(ValueError):
    """The file is not a Qt resource file, or its tree points outside the file."""


@dataclass(frozen=True)
class RccEntry:
    """One file inside an ``.rcc``: its path and where its bytes are."""

    path: str
    flags: int
    data_offset: int


class RccArchive:
    """An opened ``.rcc`` file; list entries with :meth:`entries`, read one with :meth:`read`."""

    def __init__(self, blob: bytes):
        if blob[:4] != MAGIC:
            raise RccError("not a Qt resource file (no 'qres' magic)")
        self.blob = blob
        self.version, self.tree, self.data, self.names = struct.unpack_from(">IIII", blob, 4)
        if self.version not in (1, 2, 3):
            raise RccError(f"unsupported rcc version {self.version}")
        self.node_size = 14 if self.version == 1 else 22

    @classmethod
    def open(cls, path: str | Path) -> RccArchive:
        return cls(Path(path).read_bytes())

    def _name(self, offset: int) -> str:
        at = self.names + offset
        (length,) = struct.unpack_from(">H", self.blob, at)
        raw = self.blob[at + 6 : at + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise RccError("name runs past the end of the file")
        return raw.decode("utf-16-be")

    def _node(self, index: int) -> tuple[int, int, int, int]:
        at = self.tree + index * self.node_size
        if at + 14 > len(self.blob):
            raise RccError(f"tree node {index} lies outside the file")
        name_off, flags = struct.unpack_from(">IH", self.blob, at)
        if flags & FLAG_DIRECTORY:
            count, first = struct.unpack_from(">II", self.blob, at + 6)
            return name_off, flags, count, first
        (data_off,) = struct.unpack_from(">I", self.blob, at + 10)
        return name_off, flags, 0, data_off

    def entries(self) -> Iterator[RccEntry]:
        """Every file, depth first, with ``/``-joined paths (the root has no name)."""
        stack: list[tuple[int, str]] = [(0, "")]
        seen = 0
        while stack:
            index, prefix = stack.pop()
            seen += 1
            if seen > 1_000_000:
                raise RccError("tree too large or cyclic")
            name_off, flags, count, extra = self._node(index)
            name = "" if index == 0 else self._name(name_off)
            path = f"{prefix}/{name}" if prefix else name
            if flags & FLAG_DIRECTORY:
                stack.extend((extra + k, path) for k in reversed(range(count)))
            else:
                yield RccEntry(path, flags, extra)

    def read(self, entry: RccEntry) -> bytes:
        at = self.data + entry.data_offset
        (size,) = struct.unpack_from(">I", self.blob, at)
        payload = self.blob[at + 4 : at + 4 + size]
        if len(payload) != size:
            raise RccError(f"{entry.path}: data runs past the end of the file")
        if entry.flags & FLAG_COMPRESSED:
            return zlib.decompress(payload[4:])
        if entry.flags & FLAG_COMPRESSED_ZSTD:
            try:
                import zstandard  # optional; Qt 6 may use zstd
            except ImportError as exc:
                raise RccError(f"{entry.path}: zstd-compressed and zstandard is missing") from exc
            return zstandard.ZstdDecompressor().decompress(payload)
        return payload


def extract_rcc(path: str | Path, dest: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Write the entries whose names end with one of ``suffixes`` under ``dest``; return them.
    Entries that fail to decode are skipped (one broken sound must not cost the whole file)."""
    archive = RccArchive.open(path)
    out: list[Path] = []
    for entry in archive.entries():
        if not entry.path.lower().endswith(suffixes):
            continue
        parts = [p for p in entry.path.split("/") if p not in ("", ".", "..")]
        target = Path(dest).joinpath(*parts)
        try:
            data = archive.read(entry)
        except (RccError, zlib.error):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        out.append(target)
    return out


def build_rcc(files: dict[str, bytes], *, version: int = 2, compress: tuple[str, ...] = ()) -> bytes:
    """Build a small ``.rcc`` from ``{"dir/name": bytes}``: for tests and for checking the
    reader against the layout described above (Qt sorts children by name hash; readers that
    walk the tree, like this one, do not care)."""
    tree: dict = {}
    for path, data in files.items():
        node = tree
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = data
    names = bytearray()
    name_at: dict[str, int] = {}
    datas = bytearray()
    nodes: list[bytes] = []

    def name_offset(name: str) -> int:
        if name not in name_at:
            name_at[name] = len(names)
            enc = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(enc) // 2, 0) + enc)
        return name_at[name]

    pad = b"\0" * 8 if version >= 2 else b""
    # Breadth-first so that each directory's children are contiguous, as in real files.
    nodes.append(b"")  # root placeholder
    queue: list[tuple[int, dict]] = [(0, tree)]
    while queue:
        index, children = queue.pop(0)
        first = len(nodes)
        items = sorted(children.items())
        nodes.extend(b"" for _ in items)
        if index == 0:
            nodes[0] = struct.pack(">IHII", 0, FLAG_DIRECTORY, len(items), first) + pad
        for k, (name, value) in enumerate(items):
            slot = first + k
            if isinstance(value, dict):
                nodes[slot] = (name_offset(name), len(value))  # type: ignore[assignment]
                queue.append((slot, value))
            else:
                flag = 0
                payload = value
                if name in compress or any(name.endswith(c) for c in compress):
                    flag = FLAG_COMPRESSED
                    payload = struct.pack(">I", len(value)) + zlib.compress(value)
                offset = len(datas)
                datas.extend(struct.pack(">I", len(payload)) + payload)
                nodes[slot] = struct.pack(">IHHHI", name_offset(name), flag, 0, 0, offset) + pad
        if index != 0:
            off, count = nodes[index]  # type: ignore[misc]
            nodes[index] = struct.pack(">IHII", off, FLAG_DIRECTORY, count, first) + pad
    header_size = 20 if version < 3 else 24
    tree_blob = b"".join(nodes)
    tree_off = header_size
    data_off = tree_off + len(tree_blob)
    names_off = data_off + len(datas)
    header = MAGIC + struct.pack(">IIII", version, tree_off, data_off, names_off)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree_blob + bytes(datas) + bytes(names)
