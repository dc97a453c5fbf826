"""Django integration: the fixup applied to Django projects, and the ``django-db`` result backend.

A Django project uses celeriac exactly as Celery's Django guide shows, with ``celery``
replaced by ``celeriac``::

    # proj/proj/celery.py (or proj/proj/celeriac.py)
    import os
    from celeriac import Celery

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()  # <app>/tasks.py of every INSTALLED_APPS entry

    # proj/proj/__init__.py
    from .celery import app as celery_app

    __all__ = ("celery_app",)

and ``celeriac -A proj worker -l INFO``. Tasks in ``<app>/tasks.py`` use ``@shared_task``.

What happens, and when (:mod:`celeriac.contrib.django.fixup`):

* ``Celery(...)`` applies the fixup when ``DJANGO_SETTINGS_MODULE`` is set at that
  moment (Celery's rule; pass ``fixups=()`` to opt out). Applying it only connects
  signal receivers and makes :class:`~celeriac.contrib.django.task.DjangoTask` (with
  ``delay_on_commit``) the app's task class; nothing touches Django until a worker starts.
* Worker start: ``django.setup()`` unless already done, before task modules are
  imported; Django's system checks (skipped with ``CELERY_SKIP_CHECKS``); a warning
  when ``settings.DEBUG`` is on (it keeps every query in memory).
* Every task run by a worker (not eager calls): ``django.db.close_old_connections()``
  before and after it, so a connection that is broken or older than ``CONN_MAX_AGE``
  is never reused (with the default ``CONN_MAX_AGE = 0``, each task gets a fresh one),
  and Django's caches are closed after it, as Django does around a request.
* Each prefork child drops the database connections inherited from the worker process
  by closing their sockets first, so no goodbye message reaches the server on the
  parent's behalf.

The result backend is a separate, installable Django app,
:mod:`celeriac.contrib.django.results`::

    INSTALLED_APPS = [..., "celeriac.contrib.django.results"]
    CELERY_RESULT_BACKEND = "django-db"

then ``python manage.py migrate``. Nothing here imports Django until it is used.
"""
