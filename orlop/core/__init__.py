"""The core: one VolumeService deciding everything, over a SQLite store."""
