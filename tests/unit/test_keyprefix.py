"""Result keys under ``global_keyprefix`` are named exactly as Celery names them."""

from __future__ import annotations

import celery
import pytest

import celeriac


@pytest.mark.parametrize("prefix", ["tenant", "tenant:", "tenant_", "tenant-", "tenant."])
def test_result_keys_match_celery(prefix: str) -> None:
    options = {"global_keyprefix": prefix}
    ours = celeriac.Celery("t", backend="redis://127.0.0.1:6379/0")
    ours.conf.result_backend_transport_options = options
    theirs = celery.Celery("t", backend="redis://127.0.0.1:6379/0")
    theirs.conf.result_backend_transport_options = options
    try:
        assert ours.backend.task_key("abc") == theirs.backend.get_key_for_task("abc").decode()
        assert ours.backend.group_key("g") == theirs.backend.get_key_for_group("g").decode()
    finally:
        theirs.close()
