"""Text tokenisation with the `tokenizers` library (no transformers, no torch at serving time).

The tokenizer file travels inside the model folder, so the same ids come out offline everywhere.
Texts are truncated to the manifest's ``max_length`` (special tokens included), like laion_clap.
They are NOT padded to ``max_length``: attention masks make padding irrelevant to the result
(up to float rounding), and a 77-token pad would make a 5-word query cost 5x more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.errors import EmptyTextError, ManifestError

MAX_QUERY_CHARS = 2000  # bound the work one request can ask for; truncation keeps max_length tokens anyway


def pad_rows(rows: list[np.ndarray], width: int, pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both (B, width) int64: each row padded at the end."""
    ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class TextTokenizer:
    def __init__(self, tokenizer_file: str | Path, *, max_length: int, pad_token_id: int = 1):
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise ManifestError(f"{tokenizer_file}: cannot load tokenizer: {exc}") from exc
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_length)
        self.max_length = max_length
        self.pad_token_id = pad_token_id

    def encode(self, text: str) -> np.ndarray:
        """Token ids of one text, (L,) int64, special tokens included."""
        return self.encode_batch([text])[0][0]

    def ids(self, texts: list[str]) -> list[np.ndarray]:
        """Unpadded token ids per text."""
        clean = []
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise EmptyTextError("query text is empty")
            clean.append(text[:MAX_QUERY_CHARS])
        return [np.asarray(enc.ids, dtype=np.int64) for enc in self._tok.encode_batch(clean)]

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), both (B, longest) int64, padded with ``pad_token_id``."""
        rows = self.ids(texts)
        return pad_rows(rows, max(len(r) for r in rows), self.pad_token_id)
