"""Models assembled from glassbox.nn parts."""

from glassbox.models.gpt import GPT

__all__ = ["GPT"]
