"""Reproducible evaluations in the simulated world (``tuina eval ...``)."""
