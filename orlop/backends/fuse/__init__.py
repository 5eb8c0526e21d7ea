"""Network volumes: remote storage mounted on this host through a FUSE client (sshfs, S3)."""
