"""The `cinder` backend: Cinder volumes with a filesystem, on the cloud-disk layer."""
