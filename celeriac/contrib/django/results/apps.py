"""Django app configuration for ``celeriac.contrib.django.results``."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["CeleriacResultsConfig"]


class CeleriacResultsConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = "celeriac.contrib.django.results"
    label = "celeriac_results"
    verbose_name = "Celeriac results"
    default_auto_field = "django.db.models.BigAutoField"
