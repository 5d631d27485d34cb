"""adlab: a deep-learning research framework for marketing."""

__version__ = "0.1.0"
