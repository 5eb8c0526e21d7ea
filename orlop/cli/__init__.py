"""The `orlop` command line."""
