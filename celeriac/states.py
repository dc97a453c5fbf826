"""Task states, with Celery's names and values.

A task starts ``PENDING`` (which also means "unknown id": the result store has no
record of it) and ends in one of :data:`READY_STATES`.
"""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

# Celery's value: REJECTED and IGNORED are left out (they are event-only states).
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, REVOKED, RETRY})

# Celery's ordering, used to decide whether a late state update may overwrite
# an earlier one (a SUCCESS must never be replaced by a STARTED that arrives late).
PRECEDENCE = [SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
_PRECEDENCE_LOOKUP = {state: index for index, state in enumerate(PRECEDENCE)}
_UNKNOWN_INDEX = PRECEDENCE.index(None)


def precedence(state: str) -> int:
    """Lower is "more final"; unknown custom states sit between FAILURE and REVOKED."""
    return _PRECEDENCE_LOOKUP.get(state, _UNKNOWN_INDEX)


class state(str):  # lower-case: Celery's public name
    """A state name that compares by precedence: ``state(SUCCESS) > state(STARTED)`` (as Celery's)."""

    def __gt__(self, other: str) -> bool:
        return precedence(self) < precedence(other)

    def __ge__(self, other: str) -> bool:
        return precedence(self) <= precedence(other)

    def __lt__(self, other: str) -> bool:
        return precedence(self) > precedence(other)

    def __le__(self, other: str) -> bool:
        return precedence(self) >= precedence(other)


__all__ = [
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "PRECEDENCE",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
    "precedence",
    "state",
]
