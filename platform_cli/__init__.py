"""Plinth: an ML platform as code."""
