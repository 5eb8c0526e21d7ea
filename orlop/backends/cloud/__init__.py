"""Cloud disks on one layer: the story every cloud disk shares, told once.

A cloud implements the small `CloudProvider` API (`api.py`) in its own folder (`ebs/`,
`gce/`, …). `layer.CloudDisks` turns any provider into the block layer's `DeviceProvider`
(create, attach with preemption and race guard, device discovery, detach, grow), and
`backend.CloudBackend` adds snapshots and discovery on top of the shared filesystem layer.
"""
