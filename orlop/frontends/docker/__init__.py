"""Docker's volume plugin protocol, one socket per driver, over VolumeService."""
