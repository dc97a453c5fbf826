"""The exception tree: Celery's names and bases, one root, and pickling across processes."""

from __future__ import annotations

import builtins
import pickle

import pytest

from celeriac import exceptions as exc
from celeriac.exceptions import (
    CeleriacError,
    CeleryError,
    NotRegistered,
    QueueNotFound,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TimeoutError,
)

# Everything a celeriac operation raises on purpose derives from the root.
UNDER_ROOT = [
    "AlreadyRegistered",
    "BackendError",
    "BackendGetMetaError",
    "BackendStoreError",
    "BrokerUnavailable",
    "ChordError",
    "ContentDisallowed",
    "DecodeError",
    "EncodeError",
    "Ignore",
    "ImproperlyConfigured",
    "IncompleteStream",
    "InvalidTaskError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "OperationalError",
    "QueueNotFound",
    "Reject",
    "RemoteTaskError",
    "Retry",
    "SecurityError",
    "TaskError",
    "TaskPredicate",
    "TaskRevokedError",
    "TimeoutError",
]

# As in Celery (where billiard defines them): plain Exceptions that user code catches directly.
OUTSIDE_ROOT = ["SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError", "Terminated"]


def test_celery_error_is_the_root_alias() -> None:
    assert CeleryError is CeleriacError
    assert exc.CeleryWarning is exc.CeleriacWarning
    assert issubclass(CeleriacError, Exception)


@pytest.mark.parametrize("name", UNDER_ROOT)
def test_errors_derive_from_root(name: str) -> None:
    cls = getattr(exc, name)
    assert issubclass(cls, CeleriacError)
    assert issubclass(cls, CeleryError)


@pytest.mark.parametrize("name", OUTSIDE_ROOT)
def test_time_limit_and_worker_errors_are_plain_exceptions(name: str) -> None:
    cls = getattr(exc, name)
    assert issubclass(cls, Exception)
    assert not issubclass(cls, CeleriacError)


def test_soft_time_limit_is_catchable_as_exception_only() -> None:
    caught: Exception | None = None
    try:
        raise SoftTimeLimitExceeded()
    except CeleriacError:  # pragma: no cover - the assertion below fails if this branch runs
        pass
    except Exception as exc:  # the generic handler task code writes
        caught = exc
    assert isinstance(caught, SoftTimeLimitExceeded)
    assert str(caught) == "SoftTimeLimitExceeded()"


def test_timeout_error_is_also_builtin_timeout_error() -> None:
    assert issubclass(TimeoutError, builtins.TimeoutError)
    assert issubclass(TimeoutError, exc.TaskError)
    with pytest.raises(builtins.TimeoutError):
        raise TimeoutError("late")


def test_not_registered_is_a_key_error_with_a_helpful_message() -> None:
    assert issubclass(NotRegistered, KeyError)
    err = NotRegistered("tasks.missing")
    assert "tasks.missing" in str(err)
    assert "never registered" in str(err)
    with pytest.raises(KeyError):
        raise err


def test_queue_not_found_is_a_key_error_and_task_error() -> None:
    assert issubclass(QueueNotFound, KeyError)
    assert issubclass(QueueNotFound, exc.TaskError)


def test_predicates_share_a_base() -> None:
    for name in ("Ignore", "Reject", "Retry"):
        assert issubclass(getattr(exc, name), exc.TaskPredicate)


def test_broker_unavailable_is_an_operational_error_with_url() -> None:
    err = exc.BrokerUnavailable("down", url="redis://h")
    assert isinstance(err, exc.OperationalError)
    assert err.url == "redis://h"


def test_worker_shutdown_exits() -> None:
    assert issubclass(exc.WorkerShutdown, SystemExit)
    assert issubclass(exc.WorkerTerminate, SystemExit)


def test_warnings_hierarchy() -> None:
    for name in ("AlwaysEagerIgnored", "DuplicateNodenameWarning", "FixupWarning", "NotConfigured", "SecurityWarning"):
        assert issubclass(getattr(exc, name), exc.CeleriacWarning)
    assert issubclass(exc.CeleriacWarning, UserWarning)
    assert issubclass(exc.CDeprecationWarning, DeprecationWarning)
    assert issubclass(exc.CPendingDeprecationWarning, PendingDeprecationWarning)


def test_retry_pickles_with_its_reason_and_when() -> None:
    original = Retry(exc=ValueError("flaky"), when=5)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is Retry
    assert isinstance(copy.exc, ValueError) and copy.exc.args == ("flaky",)
    assert copy.when == 5
    assert str(copy) == "Retry in 5s: ValueError('flaky')"


def test_retry_message_wins_in_str() -> None:
    assert str(Retry("custom message")) == "custom message"
    assert str(pickle.loads(pickle.dumps(Retry("custom message")))) == "custom message"


def test_reject_pickles_with_requeue_flag() -> None:
    copy = pickle.loads(pickle.dumps(Reject("bad input", requeue=True)))
    assert type(copy) is Reject
    assert copy.reason == "bad input"
    assert copy.requeue is True
    assert repr(copy) == "reject requeue=True: bad input"
    assert pickle.loads(pickle.dumps(Reject("x"))).requeue is False


@pytest.mark.parametrize(
    "error",
    [
        exc.ImproperlyConfigured("bad", key="broker_url"),
        exc.OperationalError("down", url="sqlite:///x.db"),
        exc.BackendGetMetaError("read failed", task_id="t1"),
        exc.BackendStoreError("write failed", task_id="t1", state="SUCCESS"),
        exc.MaxRetriesExceededError("too many", task_args=(1,), task_kwargs={"a": 2}),
        exc.TimeLimitExceeded(3.0),
        NotRegistered("tasks.x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_with_fields_survive_pickling(error: BaseException) -> None:
    # Exceptions cross the prefork pipe; fields must not be lost on the way.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


def test_remote_stand_in_survives_pickling() -> None:
    import pickle

    from celeriac.backends.base import exception_from_meta
    from celeriac.exceptions import RemoteTaskError

    exc = exception_from_meta({"exc_module": "not.imported.here", "exc_type": "Boom", "exc_message": ["x", 1]})
    assert exc is not None
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is type(exc) and again.args == ("x", 1)
    assert type(again).__name__ == "Boom" and isinstance(again, RemoteTaskError)
