"""Block volumes on a loop device over a sparse image file (driver kind `loopfile`)."""
