"""fund service."""
