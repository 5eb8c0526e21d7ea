"""Operating Orlop in production: metrics and health (issue 20)."""
