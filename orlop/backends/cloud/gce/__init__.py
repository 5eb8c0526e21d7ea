"""Google Persistent Disk on the cloud-disk layer (driver kind `gce`)."""
