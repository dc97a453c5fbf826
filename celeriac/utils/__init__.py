"""Celery-compatible import paths (``celeriac.utils.log``)."""
