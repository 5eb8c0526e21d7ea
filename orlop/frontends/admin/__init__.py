"""The daemon's own API for the CLI: a root-only unix socket over the same service."""
