"""Benchmarks: celeriac against Celery 5 on the same Redis (``python -m bench --help``)."""
