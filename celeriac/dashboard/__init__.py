"""The built-in web dashboard: pages, JSON API, Prometheus ``/metrics`` and health endpoints.

Needs the ``dashboard`` extra (``pip install 'celeriac[dashboard]'``); start it with
``celeriac -A proj dashboard``. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from .app import create_app, default_db_path
from .security import Auth, InsecureBind, check_bind

__all__ = ["Auth", "InsecureBind", "check_bind", "create_app", "default_db_path"]
