"""Data: registry datasets, sources that read files, and the one data module."""
