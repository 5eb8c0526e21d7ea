"""File-share volumes: a share or export made through a storage system's API, mounted over
SMB or NFS (the kernel's client, or smbnetfs through FUSE where the kernel has none)."""
