"""Ways into the service: Docker's plugin protocol, the admin API for the CLI."""
