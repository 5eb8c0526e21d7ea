"""Local snapshots, clones, restore and backups for the volumes on this host."""
