"""The `vsphere` backend: vSphere virtual disks with a filesystem, on the cloud-disk layer."""
