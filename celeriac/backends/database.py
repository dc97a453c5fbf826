"""SQLAlchemy result backend, with Celery's tables.

URL: ``db+<sqlalchemy url>``, e.g. ``db+postgresql://user:pass@host/db``,
``db+mysql+pymysql://root@host/db``, ``db+sqlite:///results.db`` (or the
``database_url`` setting).

Tables (created on first use, as Celery creates them, so a Celery client reads
celeriac's results and back)::

    celery_taskmeta     id, task_id (unique), status, result (pickled), date_done, traceback,
                        and name, args, kwargs, worker, retries, queue (``result_extended``)
    celery_tasksetmeta  id, taskset_id (unique), result (pickled), date_done

Names and schemas come from ``database_table_names`` / ``database_table_schemas``
(``{'task': ..., 'group': ...}``); engine options from ``database_engine_options``.
The ``result`` column holds a pickle because that is Celery's column type; it is
only ever read from this database, never from a message.

One pooled engine per process and URL (a forked child makes its own). ``get()``
polls with the base class's backoff (from 5 ms up to ``interval``), so a waiting
client costs the database at most a couple of small queries per second.
``result_expires`` is applied by :meth:`cleanup` (``celeriac purge-results``, or the
``celery.backend_cleanup`` task).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import BackendError, ImproperlyConfigured
from .base import ResultBackend, ResultMeta, exception_from_meta, exception_to_meta

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..app import Celery

__all__ = ["DatabaseBackend"]

_engines: dict[tuple[int, str, str], Any] = {}
_engines_lock = threading.Lock()
_EXTENDED = ("name", "args", "kwargs", "worker", "retries", "queue")


def _engine(url: str, options: Mapping[str, Any]) -> Any:
    import sqlalchemy as sa

    key = (os.getpid(), url, repr(sorted(options.items())))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            opts = dict(options)
            if url.startswith("sqlite"):
                opts.pop("pool_recycle", None)
            engine = sa.create_engine(url, **opts)
            _engines[key] = engine
        return engine


def _tables(metadata: sa.MetaData, names: Mapping[str, str], schemas: Mapping[str, str]) -> tuple[sa.Table, sa.Table]:
    import sqlalchemy as sa

    big_int = sa.Integer().with_variant(sa.BigInteger, "mssql")
    task_schema, group_schema = schemas.get("task"), schemas.get("group")
    task = sa.Table(
        names.get("task", "celery_taskmeta"),
        metadata,
        sa.Column("id", big_int, sa.Sequence("task_id_sequence", schema=task_schema), primary_key=True,
                  autoincrement=True),
        sa.Column("task_id", sa.String(155), unique=True),
        sa.Column("status", sa.String(50), default=states.PENDING),
        sa.Column("result", sa.PickleType, nullable=True),
        sa.Column("date_done", sa.DateTime, nullable=True, index=True),
        sa.Column("traceback", sa.Text, nullable=True),
        # Celery adds these with result_extended; always creating them (nullable) keeps the
        # table usable by either side whatever each one's setting.
        sa.Column("name", sa.String(155), nullable=True),
        sa.Column("args", sa.LargeBinary, nullable=True),
        sa.Column("kwargs", sa.LargeBinary, nullable=True),
        sa.Column("worker", sa.String(155), nullable=True),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("queue", sa.String(155), nullable=True),
        schema=task_schema,
        sqlite_autoincrement=True,
    )  # fmt: skip
    group = sa.Table(
        names.get("group", "celery_tasksetmeta"),
        metadata,
        sa.Column("id", big_int, sa.Sequence("taskset_id_sequence", schema=group_schema), primary_key=True,
                  autoincrement=True),
        sa.Column("taskset_id", sa.String(155), unique=True),
        sa.Column("result", sa.PickleType, nullable=True),
        sa.Column("date_done", sa.DateTime, nullable=True, index=True),
        schema=group_schema,
        sqlite_autoincrement=True,
    )  # fmt: skip
    return task, group


def _chord_tables(metadata: sa.MetaData, schema: str | None) -> tuple[sa.Table, sa.Table]:
    """celeriac's own tables beside Celery's: a chord's finished parts, and its lock row."""
    import sqlalchemy as sa

    parts = sa.Table(
        "celeriac_chord_parts",
        metadata,
        sa.Column("group_id", sa.String(155), primary_key=True),
        sa.Column("task_id", sa.String(155), primary_key=True),
        sa.Column("position", sa.Float, nullable=False),
        sa.Column("part", sa.LargeBinary, nullable=False),
        sa.Column("date_done", sa.DateTime, nullable=False, index=True),
        schema=schema,
    )
    chords = sa.Table(
        "celeriac_chords",
        metadata,
        sa.Column("group_id", sa.String(155), primary_key=True),
        sa.Column("done", sa.Boolean, nullable=False, default=False),
        sa.Column("date_done", sa.DateTime, nullable=False, index=True),
        schema=schema,
    )
    return parts, chords


class DatabaseBackend(ResultBackend):
    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url, options, app=app)
        try:
            import sqlalchemy  # noqa: F401
        except ImportError:
            raise ImproperlyConfigured(
                "result_backend: the db+ backend needs SQLAlchemy (pip install 'celeriac[sqlalchemy]')",
                key="result_backend",
            ) from None
        conf = app.conf if app is not None else None
        db_url = url[3:] if url.startswith("db+") else url
        if not db_url and conf is not None:
            db_url = conf.database_url or ""
        if not db_url:
            raise ImproperlyConfigured("Missing connection string: set result_backend='db+...' or database_url")
        self.db_url = db_url
        self.engine_options = dict(conf.database_engine_options or {}) if conf is not None else {}
        self.table_names = dict(conf.database_table_names or {}) if conf is not None else {}
        self.table_schemas = dict(conf.database_table_schemas or {}) if conf is not None else {}
        self.extended = bool(conf.result_extended) if conf is not None else False
        expires = conf.result_expires if conf is not None else timedelta(days=1)
        self.expires = expires.total_seconds() if isinstance(expires, timedelta) else float(expires or 0)
        self._ready_pid = 0
        self._lock = threading.Lock()
        self._task: Any = None
        self._group: Any = None
        self._parts: Any = None
        self._chords: Any = None
        self._columns: set[str] = set()

    # -- setup ------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        return _engine(self.db_url, self.engine_options)

    def _setup(self) -> None:
        if self._ready_pid == os.getpid():
            return
        import sqlalchemy as sa

        with self._lock:
            if self._ready_pid == os.getpid():
                return
            metadata = sa.MetaData()
            self._task, self._group = _tables(metadata, self.table_names, self.table_schemas)
            self._parts, self._chords = _chord_tables(metadata, self.table_schemas.get("group"))
            try:
                try:
                    metadata.create_all(self.engine, checkfirst=True)
                except sa.exc.SQLAlchemyError:
                    # Another process created the tables between our check and our CREATE: check again.
                    time.sleep(0.05)
                    metadata.create_all(self.engine, checkfirst=True)
                # A table created earlier (e.g. by Celery without result_extended) may lack columns.
                inspector = sa.inspect(self.engine)
                self._columns = {c["name"] for c in inspector.get_columns(self._task.name, schema=self._task.schema)}
            except sa.exc.SQLAlchemyError as exc:
                raise BackendError(f"can't set up the result tables at {self.engine.url!r}: {exc}") from exc
            self._ready_pid = os.getpid()

    # -- the interface -------------------------------------------------------------
    def store(self, meta: ResultMeta) -> None:
        import sqlalchemy as sa

        self._setup()
        task = self._task
        values = self._row(meta)
        try:
            with self.engine.begin() as conn:
                conn.execute(task.insert().values(task_id=meta.task_id, **values))
            return
        except sa.exc.IntegrityError:
            pass  # a row exists: update it below
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"can't store the result of task {meta.task_id}: {exc}") from exc
        update = task.update().where(task.c.task_id == meta.task_id)
        if meta.status != states.SUCCESS:
            # A stored SUCCESS is final: a duplicate run's late update must not undo it.
            update = update.where(task.c.status != states.SUCCESS)
        try:
            with self.engine.begin() as conn:
                conn.execute(update.values(**values))
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"can't store the result of task {meta.task_id}: {exc}") from exc

    def _row(self, meta: ResultMeta) -> dict[str, Any]:
        result = meta.result
        if meta.status in states.EXCEPTION_STATES and isinstance(result, BaseException):
            result = exception_to_meta(result)
        date_done = meta.date_done.astimezone(timezone.utc).replace(tzinfo=None) if meta.date_done else None
        row: dict[str, Any] = {
            "status": meta.status,
            "result": result,
            "date_done": date_done if date_done is not None else _utcnow(),
            "traceback": meta.traceback,
        }
        if meta.name is not None and self._columns.issuperset(_EXTENDED):
            from ..serialization import dumps

            serializer = self.app.conf.result_serializer if self.app is not None else "json"
            row.update(
                name=meta.name,
                args=dumps(meta.args, serializer)[2],
                kwargs=dumps(meta.kwargs, serializer)[2],
                worker=meta.worker,
                retries=meta.retries,
                queue=meta.queue,
            )
        return row

    def load(self, task_id: str) -> ResultMeta | None:
        import sqlalchemy as sa

        self._setup()
        task = self._task
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(task).where(task.c.task_id == task_id)).mappings().first()
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"can't read the result of task {task_id}: {exc}") from exc
        if row is None:
            return None
        status = row["status"] or states.PENDING
        result = row["result"]
        if status in states.EXCEPTION_STATES:
            result = exception_from_meta(result)
        date_done = row["date_done"]
        if isinstance(date_done, datetime) and date_done.tzinfo is None:
            date_done = date_done.replace(tzinfo=timezone.utc)
        extended = {key: row.get(key) for key in _EXTENDED} if "name" in row else {}
        if extended.get("args") is not None or extended.get("kwargs") is not None:
            extended["args"], extended["kwargs"] = (
                self._decode(extended.get("args")),
                self._decode(extended.get("kwargs")),
            )
        return ResultMeta(
            task_id=task_id,
            status=status,
            result=result,
            traceback=row["traceback"],
            date_done=date_done if status in states.READY_STATES else None,
            **extended,
        )

    def _decode(self, raw: Any) -> Any:
        if raw is None:
            return None
        from ..serialization import get_serializer, loads, prepare_accept_content

        serializer = self.app.conf.result_serializer if self.app is not None else "json"
        ser = get_serializer(serializer)
        accept = (
            prepare_accept_content(self.app.conf.result_accept_content or self.app.conf.accept_content)
            if (self.app is not None)
            else None
        )
        return loads(bytes(raw), ser.content_type, ser.content_encoding, accept)

    def forget(self, task_id: str) -> None:
        self._setup()
        with self.engine.begin() as conn:
            conn.execute(self._task.delete().where(self._task.c.task_id == task_id))

    # -- groups and cleanup ---------------------------------------------------------
    def save_group(self, group_id: str, result: Any) -> None:
        self._setup()
        as_tuple = result.as_tuple() if hasattr(result, "as_tuple") else result
        with self.engine.begin() as conn:
            conn.execute(self._group.insert().values(taskset_id=group_id, result=as_tuple, date_done=_utcnow()))

    def restore_group(self, group_id: str) -> Any:
        import sqlalchemy as sa

        self._setup()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self._group.c.result).where(self._group.c.taskset_id == group_id)).first()
        return row[0] if row is not None else None

    def delete_group(self, group_id: str) -> None:
        self._setup()
        with self.engine.begin() as conn:
            conn.execute(self._group.delete().where(self._group.c.taskset_id == group_id))

    # -- chords: the parts table under a per-chord row lock ------------------------------
    def apply_chord(self, header_result: Any, body: Any) -> None:
        import sqlalchemy as sa

        self._setup()
        try:
            with self.engine.begin() as conn:
                conn.execute(self._chords.insert().values(group_id=header_result.id, done=False,
                                                          date_done=_utcnow()))  # fmt: skip
        except sa.exc.IntegrityError:
            pass  # sent again with the same id: the row is there

    def on_chord_part_return(self, request: Any, state: str, result: Any) -> None:
        """Count the part; the part that completes the chord sends its body (exactly once).

        Chords sent by Celery clients carry no size and are completed by the
        ``celery.chord_unlock`` task Celery sends with them, as Celery's SQL store expects.
        """
        import sqlalchemy as sa

        from ..serialization import dumps
        from ._chords import finish

        task_id, group_id = getattr(request, "id", None), getattr(request, "group", None)
        callback = getattr(request, "chord", None)
        if not task_id or not group_id or not callback or callback.get("chord_size") is None:
            return
        self._setup()
        index = getattr(request, "group_index", None)
        encoded = dumps([task_id, state, self._part_value(result, state)], "json")[2]
        parts, chords = self._parts, self._chords
        rows = None
        with self.engine.begin() as conn:
            # The chord's row, locked: parts of one chord are counted one at a time.
            lock = sa.select(chords.c.done).where(chords.c.group_id == group_id).with_for_update()
            done = conn.execute(lock).scalar()
            if done is None:
                try:
                    with conn.begin_nested():
                        conn.execute(chords.insert().values(group_id=group_id, done=False, date_done=_utcnow()))
                except sa.exc.IntegrityError:
                    pass  # created just now by another part
                done = conn.execute(lock).scalar()
            if done:
                return
            try:
                with conn.begin_nested():
                    conn.execute(parts.insert().values(
                        group_id=group_id, task_id=task_id, position=float(index if index is not None else 1e18),
                        part=encoded, date_done=_utcnow(),
                    ))  # fmt: skip
            except sa.exc.IntegrityError:
                return  # this part ran before: it counts once
            count = conn.execute(sa.select(sa.func.count()).select_from(parts).where(parts.c.group_id == group_id))
            if int(count.scalar() or 0) < int(callback["chord_size"]):
                return
            conn.execute(chords.update().where(chords.c.group_id == group_id).values(done=True))
            rows = conn.execute(
                sa.select(parts.c.part).where(parts.c.group_id == group_id).order_by(parts.c.position)
            ).all()
            conn.execute(parts.delete().where(parts.c.group_id == group_id))
        values, error = self._unpack_parts([_json(row[0]) for row in rows])
        finish(self, callback, group_id, values, error)

    def cleanup(self) -> int:
        """Delete results older than ``result_expires``; returns how many rows went."""
        if not self.expires:
            return 0
        self._setup()
        cutoff = _utcnow() - timedelta(seconds=self.expires)
        with self.engine.begin() as conn:
            tasks = conn.execute(self._task.delete().where(self._task.c.date_done < cutoff)).rowcount
            groups = conn.execute(self._group.delete().where(self._group.c.date_done < cutoff)).rowcount
            conn.execute(self._parts.delete().where(self._parts.c.date_done < cutoff))
            conn.execute(self._chords.delete().where(self._chords.c.date_done < cutoff))
        return int(tasks or 0) + int(groups or 0)

    def close(self) -> None:
        pass  # engines are shared per process; their pools close with it

    def __repr__(self) -> str:
        from ..config import mask_url

        return f"<celeriac.backends.database.DatabaseBackend db+{mask_url(self.db_url)}>"

    __str__ = __repr__


def _json(raw: Any) -> Any:
    from ..serialization import loads, prepare_accept_content

    return loads(bytes(raw), "application/json", "utf-8", prepare_accept_content(["json"]))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
