"""The CSI frontend: Identity, Controller and Node over gRPC, over the same VolumeService.

It knows gRPC and CSI's rules, and no storage: every call becomes a VolumeService call."""
