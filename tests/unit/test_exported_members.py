"""The public surface: our pinned export list, and every name Celery users import from Celery's paths."""

from __future__ import annotations

import importlib

import celery
import celery.exceptions
import celery.signals
import celery.states
import pytest

import celeriac
from celeriac import exceptions, signals, states

PINNED_ALL = [
    "AsyncResult",
    "Celery",
    "EagerResult",
    "Exchange",
    "GroupResult",
    "Queue",
    "ResultSet",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]

# celery.exceptions names celeriac deliberately does not provide.
EXCEPTION_EXCLUSIONS = {
    # Raised by Celery's own click commands; celeriac's CLI reports errors through click itself.
    "CeleryCommandException",
    # A helper function (re-raise with a traceback), not an exception: use ``raise ... from``.
    "reraise",
}

# Names of Celery's top-level package that celeriac has no use for (packaging metadata,
# Celery's lazy-module machinery and internals), so they are not compared.
TOP_LEVEL_NOT_COMPARED = {
    "SERIES",
    "VERSION",
    "VERSION_BANNER",
    "__author__",
    "__contact__",
    "__doc__",
    "__docformat__",
    "__file__",
    "__homepage__",
    "__package__",
    "__path__",
    "_find_option_with_arg",
    "_original_os_write",
    "bugreport",
    "execute",
    "local",
    "log",
    "maybe_patch_concurrency",
    "messaging",
    "registry",
    "version_info",
    "version_info_t",
}
# Names not implemented yet; the test fails once one appears, so this list is kept honest.
TOP_LEVEL_NOT_YET: set[str] = set()


def test_all_is_pinned_and_sorted() -> None:
    assert celeriac.__all__ == PINNED_ALL
    assert celeriac.__all__ == sorted(celeriac.__all__)
    for name in celeriac.__all__:
        assert hasattr(celeriac, name), name


def test_top_level_names_match_celery() -> None:
    wanted = set(celery.__all__) - TOP_LEVEL_NOT_COMPARED
    missing = {name for name in wanted if not hasattr(celeriac, name)}
    assert missing == TOP_LEVEL_NOT_YET


def test_the_usual_top_level_imports() -> None:
    from celeriac import Celery, Task, current_app, current_task, shared_task, signature, states, uuid

    assert callable(Celery) and callable(shared_task) and callable(signature)
    assert isinstance(Task, type)
    assert states.SUCCESS == "SUCCESS"
    assert current_app is not None
    assert not current_task  # no task is executing here
    first, second = uuid(), uuid()
    assert isinstance(first, str) and len(first) == 36 and first != second


def test_result_imports() -> None:
    from celeriac.result import AsyncResult, EagerResult

    assert issubclass(EagerResult, AsyncResult)
    assert celeriac.AsyncResult is AsyncResult


def test_get_task_logger_import() -> None:
    from celeriac.utils.log import get_task_logger

    logger = get_task_logger("tasks.add")
    assert logger.name == "tasks.add"


def test_exception_names_match_celery() -> None:
    wanted = set(celery.exceptions.__all__) - EXCEPTION_EXCLUSIONS
    missing = sorted(name for name in wanted if not hasattr(exceptions, name))
    assert missing == []
    # The exclusions are real Celery names (a renamed one would silently widen the gap).
    assert EXCEPTION_EXCLUSIONS <= set(celery.exceptions.__all__)


@pytest.mark.parametrize("name", sorted(set(celery.exceptions.__all__) - EXCEPTION_EXCLUSIONS))
def test_exception_kinds_match_celery(name: str) -> None:
    ours, theirs = getattr(exceptions, name), getattr(celery.exceptions, name)
    assert isinstance(ours, type) and isinstance(theirs, type)
    # The builtin bases (KeyError, SystemExit, UserWarning, TimeoutError...) are what user code catches.
    builtin_bases = {base for base in theirs.__mro__ if base.__module__ == "builtins"}
    assert builtin_bases <= set(ours.__mro__), (name, builtin_bases - set(ours.__mro__))


def test_from_exceptions_import_star_works() -> None:
    namespace: dict[str, object] = {}
    exec("from celeriac.exceptions import *", namespace)
    assert sorted(exceptions.__all__) == exceptions.__all__
    for name in exceptions.__all__:
        assert name in namespace


def test_signal_names_match_celery() -> None:
    missing = sorted(
        name for name in celery.signals.__all__ if not isinstance(getattr(signals, name, None), signals.Signal)
    )
    assert missing == []
    assert set(celery.signals.__all__) <= set(signals.__all__)


def test_signal_objects_carry_their_name() -> None:
    for name in celery.signals.__all__:
        assert getattr(signals, name).name == name


def test_state_names_and_values_match_celery() -> None:
    for name in celery.states.__all__:
        assert hasattr(states, name), name
    # Celery's PRECEDENCE_LOOKUP / NONE_PRECEDENCE are internals of its precedence(); ours is compared below.
    constants = [n for n in dir(celery.states) if n.isupper() and n not in ("PRECEDENCE_LOOKUP", "NONE_PRECEDENCE")]
    assert len(constants) >= 15
    for name in constants:
        assert getattr(states, name) == getattr(celery.states, name), name


def test_state_precedence_matches_celery() -> None:
    for value in [*celery.states.PRECEDENCE, "PROGRESS", "CUSTOM"]:
        if value is None:
            continue
        assert states.precedence(value) == celery.states.precedence(value), value


def test_state_comparisons_match_celery() -> None:
    names = ["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "PROGRESS"]
    for left in names:
        for right in names:
            ours = (states.state(left) > right, states.state(left) < right, states.state(left) >= right)
            theirs = (celery.states.state(left) > right, celery.states.state(left) < right)
            assert ours[:2] == theirs, (left, right)
            assert ours[2] == (celery.states.state(left) >= right)


@pytest.mark.parametrize("module", ["celeriac.result", "celeriac.signals", "celeriac.exceptions", "celeriac.states"])
def test_module_all_lists_only_existing_names(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"
