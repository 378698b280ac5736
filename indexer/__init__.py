"""clapsearch's torch-free core. Importing it keeps foreign start-up log chatter quiet (see
``indexer.logs``), for the CLI and the service alike."""

from indexer.logs import quiet_library_loggers

quiet_library_loggers()
