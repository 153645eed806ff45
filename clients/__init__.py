"""Clients of the translation service: the ``translate-po`` command."""
