"""Dell PowerScale / Isilon volumes (kind `powerscale`)."""
