"""Dell PowerFlex (ScaleIO) volumes on the cloud-disk layer (driver kind `powerflex`)."""
