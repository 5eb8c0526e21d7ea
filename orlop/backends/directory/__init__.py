"""Plain directories on this host (driver kind `directory`, the embedded default)."""
