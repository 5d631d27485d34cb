"""Logger-agnostic callbacks."""
