"""AWS EBS volumes on the cloud-disk layer (driver kind `ebs`)."""
