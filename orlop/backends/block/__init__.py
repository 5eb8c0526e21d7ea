"""Block volumes: a device provider (loop file, EBS, …) under one shared filesystem layer."""
