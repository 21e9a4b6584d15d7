"""SQL instances: a submitted job runs its SQL task in the background; pyodps polls its status and reads
its result (the ``?result`` CSV or the instance tunnel).

The service answers ``201 Created`` with a ``Location`` at once and runs the job later; so does this,
on a small worker pool. A job's SQL fails inside the instance (the task ends ``FAILED`` and its result
is the ``ODPS-0130161:...`` text pyodps raises), never in the submitting request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from localcloud.maxcompute.errors import MaxComputeError, SqlError, invalid_parameter, no_such_object

log = logging.getLogger(__name__)

#: The service keeps instances for days; the local server keeps the latest this many (results in memory).
KEEP_INSTANCES = 500
#: ``?result`` answers at most this many rows (``SelectResultStatus: TRUNCATED`` beyond): the service's
#: default READ_TABLE_MAX_ROW. The instance tunnel reads everything unless the reader asks for a limit.
RESULT_ROW_LIMIT = 10000


@dataclass
class SqlJob:
    task_name: str
    query: str
    settings: dict[str, str]
    source: str  # the submitted <Job> XML, answered by ?source


@dataclass
class Instance:
    id: str
    project: str
    job: SqlJob
    owner: str
    start: float = field(default_factory=time.time)
    end: float | None = None
    task_status: str = "WAITING"  # WAITING, RUNNING, SUCCESS, FAILED, CANCELLED
    result: Any = None  # SqlResult on success
    error: SqlError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def status(self) -> str:
        return "Terminated" if self.done.is_set() else "Running"


def parse_job(body: bytes) -> SqlJob:
    """The one SQL task of a submitted ``<Instance><Job>``; other task kinds are refused."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise invalid_parameter(f"the instance XML cannot be parsed: {exc}") from None
    tasks = root.find("./Job/Tasks")
    if tasks is None or len(tasks) != 1:
        raise invalid_parameter("a job must have exactly one task (the local server runs SQL tasks only)")
    task = tasks[0]
    if task.tag != "SQL":
        raise MaxComputeError(400, "InstanceTypeNotSupported",
                              f"task type {task.tag} is not supported by the local MaxCompute server (SQL only)")
    settings: dict[str, str] = {}
    for prop in task.findall("./Config/Property"):
        if prop.findtext("Name") == "settings":
            try:
                settings = {str(k): str(v) for k, v in json.loads(prop.findtext("Value") or "{}").items()}
            except ValueError:
                raise invalid_parameter("the SQL task's settings are not JSON") from None
    job = root.find("./Job")
    return SqlJob(task.findtext("Name") or "AnonymousSQLTask", task.findtext("Query") or "", settings,
                  ET.tostring(job, encoding="unicode"))


class InstanceRunner:
    """Runs submitted SQL on ``engine`` (an :class:`~localcloud.maxcompute.sql.SqlEngine`)."""

    def __init__(self, engine: Any, *, workers: int = 2, sql_delay_s: Callable[[], float] = lambda: 0.0) -> None:
        self.engine = engine
        self.sql_delay_s = sql_delay_s  # fault knob, read as each task starts: it takes at least this long
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="maxcompute-sql")
        self._instances: OrderedDict[str, Instance] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, project: str, job: SqlJob, owner: str) -> Instance:
        instance_id = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + uuid.uuid4().hex[:14]
        instance = Instance(instance_id, project, job, owner)
        with self._lock:
            self._instances[instance_id] = instance
            while len(self._instances) > KEEP_INSTANCES:
                self._instances.popitem(last=False)
        self._pool.submit(self._run, instance)
        return instance

    def get(self, project: str, instance_id: str) -> Instance:
        with self._lock:
            instance = self._instances.get(instance_id)
        if instance is None or instance.project != project:
            raise no_such_object(f"instance {instance_id} not found in project {project}")
        return instance

    def _run(self, instance: Instance) -> None:
        instance.task_status = "RUNNING"
        started, delay = time.monotonic(), self.sql_delay_s()
        try:
            instance.result = self.engine.execute(instance.project, instance.job.query, instance.job.settings)
            instance.task_status = "SUCCESS"
        except SqlError as exc:
            # A copy: the raised one's traceback holds the query's frames (and its DuckDB connection)
            # alive for as long as the instance is kept.
            instance.error, instance.task_status = SqlError(exc.code, exc.message), "FAILED"
        except MaxComputeError as exc:
            instance.error, instance.task_status = SqlError("ODPS-0130071", f"[0,0] {exc.message}"), "FAILED"
        except Exception as exc:  # an engine bug: the task fails with an internal error, the server lives on
            log.exception("SQL instance %s failed", instance.id)
            instance.error = SqlError("ODPS-0010000", f"System internal error - {type(exc).__name__}: {exc}")
            instance.task_status = "FAILED"
        remaining = delay - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        instance.end = time.time()
        instance.done.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
