"""The Django app behind the ``django-db`` result backend (django-celery-results' equivalent).

Set up::

    INSTALLED_APPS = [..., "celeriac.contrib.django.results"]
    CELERY_RESULT_BACKEND = "django-db"     # result_backend = "django-db" without a namespace

then ``python manage.py migrate celeriac_results``. Results are rows of
:class:`~celeriac.contrib.django.results.models.TaskResult` (table
``celeriac_results_taskresult``), readable with ``AsyncResult(id).get()`` or the ORM;
see :mod:`celeriac.contrib.django.results.backend` for the row layout.
"""
