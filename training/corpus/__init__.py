"""Build the default model's training corpus from Debian packages, fluidsynth renders and the
curated extra-sfx folder (``clap-train corpus``). See :mod:`training.corpus.build`."""
