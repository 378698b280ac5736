"""``python -m indexer.cli.run ...`` == the ``indexer`` console script (for subprocesses and
environments without the script on PATH)."""

from indexer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
