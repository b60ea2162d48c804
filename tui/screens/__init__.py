"""The TUI's screens: library, search, record, ingest, and the modals."""
