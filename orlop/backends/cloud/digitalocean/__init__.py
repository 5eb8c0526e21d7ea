"""DigitalOcean Block Storage volumes on the cloud-disk layer (driver kind `digitalocean`)."""
