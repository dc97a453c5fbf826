"""Real PostgreSQL, MariaDB and SQLite databases, isolated per test (schema, table names or file)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Database:
    """A result_backend URL plus the settings that isolate this test's tables."""

    kind: str
    url: str
    settings: dict[str, object] = field(default_factory=dict)


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    import sqlalchemy as sa

    tag = uuid.uuid4().hex[:10]
    if request.param == "sqlite":
        yield Database("sqlite", f"db+sqlite:///{tmp_path}/results.db")
        return
    if request.param == "postgresql":
        if not _up(5432):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (scripts/services starts it)")
        url = "postgresql://postgres@127.0.0.1:5432/test"
        schema = f"celeriac_{tag}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        yield Database("postgresql", f"db+{url}", {"database_table_schemas": {"task": schema, "group": schema}})
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
        return
    if not _up(3306):
        pytest.fail("MariaDB is not running on 127.0.0.1:3306 (scripts/services starts it)")
    url = "mysql+pymysql://root@127.0.0.1:3306/test"
    names = {"task": f"t_{tag}_taskmeta", "group": f"t_{tag}_tasksetmeta"}
    yield Database("mariadb", f"db+{url}", {"database_table_names": names})
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in names.values():
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    engine.dispose()
