"""HTTP adapter."""
