"""Training data: manifests -> records -> (serving-identical features, caption) batches.

``readers`` (our JSONL/CSV) and ``public_readers`` (AudioCaps, Clotho, WebDataset shards) turn
listings into :class:`~training.data.records.ClipRecord` lists; ``captions`` decides the text of
each sample; ``dataset`` and ``sampler`` (the only torch users) feed a reproducible, resumable
DataLoader. Import names from their modules: this package re-exports nothing, so reading a
manifest never imports torch or the other readers.
"""
