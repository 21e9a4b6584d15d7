"""Push changed documents to the index (the data plane push API) and prove the service applied them.

Why: a full rebuild re-reads and re-vectorizes every image; when 1% of a catalog changes, a delta run
pushes that 1% instead (``rebuild.mode: delta|auto``, README "Cost proportional to change").

The push API (``alibabacloud_ha3engine`` ``Client.push_documents`` = ``POST /update/<data source>/
actions/bulk``, HTTP Basic auth with the query user) takes a JSON array of ``{"cmd": "add"|"delete",
"fields": {...}}``. Documented limits: at most 2 MB per request body and about 10 MB/s. The answer
``{"status": "OK"}`` means *received*, not applied: the service applies pushes asynchronously and may
drop one. So a delta run:

1. packs documents, in id order, into request bodies of at most ``max_request_bytes`` (the SDK sends a
   string body as it is: we serialize exactly as it would, so the byte count is the wire's);
2. paces the bodies to ``max_bytes_per_second`` and retries a throttled (429, codes 3007/3008/3013/3014)
   or failed (5xx, 1000, unreachable) request with backoff, a bounded number of times: add and delete
   are idempotent, so repeating a request that may have arrived is safe;
3. records after each answered request the last id it carried (``remember``), so a retried task
   resumes after it instead of pushing everything again;
4. then polls primary-key lookups until every added document answers with the pushed fields and every
   deleted one is gone, within ``verify_timeout_minutes``; else :class:`DeltaNotAppliedError` names them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import PushConfig
from pipeline.errors import (
    DeltaError,
    DeltaNotAppliedError,
    OpenSearchAccessError,
    OpenSearchError,
    PipelineError,
    TransientOpenSearchError,
)
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.search import OpenSearchQuery, ha_errors, ha_hits
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)

# Error codes of the push API that a later attempt may cure (vendor error-code pages: 1000 timeout /
# system error, 3007 rate limit (Industry Algorithm Edition), 3008 too many requests, 3013 application
# push quota, 3014 system push quota).
TRANSIENT_PUSH_CODES = frozenset({1000, 3007, 3008, 3013, 3014})
#: Fields a pushed document carries: the catalog columns OpenSearch's table maps (never the ETag).
DOCUMENT_FIELDS = ("id", "source_image", "cate_id")
#: Primary keys per lookup query while verifying (each answers up to this many hits).
LOOKUP_BATCH = 500
_MAX_NAMED = 10


def encode_document(cmd: str, fields: Mapping[str, Any]) -> bytes:
    """One document as the SDK serializes the body (``UtilClient.to_jsonstring``: no ASCII escaping,
    no spaces), so the sum of the parts is the request's byte count."""
    return json.dumps({"cmd": cmd, "fields": dict(fields)}, ensure_ascii=False, separators=(",", ":")).encode()


def add_document(row: Mapping[str, Any]) -> bytes:
    return encode_document("add", {name: row[name] for name in DOCUMENT_FIELDS})


def delete_document(pk: int, key_field: str = "id") -> bytes:
    return encode_document("delete", {key_field: pk})


@dataclass(frozen=True)
class Change:
    """One document to push, in id order: ``cmd`` add (``reason`` added or changed) or delete."""

    cmd: str
    pk: int
    row: Mapping[str, Any] | None = None  # the catalog row of an add
    reason: str = ""

    def encode(self, key_field: str) -> bytes:
        return add_document(self.row or {}) if self.cmd == "add" else delete_document(self.pk, key_field)


@dataclass
class PackedRequest:
    """A request body: documents joined as a JSON array, at most the packer's byte limit."""

    parts: list[bytes] = field(default_factory=list)
    last_pk: int | None = None
    adds: int = 0
    deletes: int = 0
    size: int = 2  # "[" and "]"

    def body(self) -> str:
        return (b"[" + b",".join(self.parts) + b"]").decode()


class RequestPacker:
    """Packs encoded documents, in order, into request bodies of at most ``max_bytes`` bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._current = PackedRequest()

    def add(self, change: Change, data: bytes) -> PackedRequest | None:
        """Take one document; return the previous request when this one no longer fits in it."""
        if len(data) + 2 > self.max_bytes:
            raise DeltaError(
                f"document {change.pk} is {len(data)} bytes encoded, more than one request may carry "
                f"({self.max_bytes} bytes, rebuild.push.max_request_bytes): shorten its path or raise the limit"
            )
        full = None
        separator = 1 if self._current.parts else 0
        if self._current.parts and self._current.size + separator + len(data) > self.max_bytes:
            full, self._current, separator = self._current, PackedRequest(), 0
        request = self._current
        request.parts.append(data)
        request.size += separator + len(data)
        request.last_pk = change.pk
        if change.cmd == "add":
            request.adds += 1
        else:
            request.deletes += 1
        return full

    def flush(self) -> PackedRequest | None:
        request, self._current = self._current, PackedRequest()
        return request if request.parts else None


class ByteRate:
    """At most ``bytes_per_second`` bytes sent in any one-second window (a sliding log of sends)."""

    def __init__(self, bytes_per_second: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.bytes_per_second = bytes_per_second
        self._clock, self._sleep = clock, sleep
        self._sent: list[tuple[float, int]] = []
        self.waited_s = 0.0

    def acquire(self, size: int) -> None:
        """Wait until ``size`` more bytes fit in the window ending now, then count them."""
        while True:
            now = self._clock()
            self._sent = [(t, n) for t, n in self._sent if now - t < 1.0]
            used = sum(n for _t, n in self._sent)
            if not self._sent or used + size <= self.bytes_per_second:
                self._sent.append((now, size))
                return
            pause = max(0.001, 1.0 - (now - self._sent[0][0]))
            self.waited_s += pause
            self._sleep(pause)


class OpenSearchPush:
    """``push_documents`` through the HA3 SDK, with the answer checked and errors in our hierarchy."""

    def __init__(self, conn: OpenSearchConnection, data_source: str, key_field: str) -> None:
        from alibabacloud_ha3engine import client, models
        from alibabacloud_tea_util import models as util_models

        self.conn, self.data_source, self.key_field = conn, data_source, key_field
        self._models = models
        timeout_ms = int(conn.timeout_s * 1000)
        self._client = client.Client(models.Config(
            endpoint=conn.query_endpoint, instance_id=conn.instance_id, protocol=conn.query_protocol,
            access_user_name=conn.query_user, access_pass_word=conn.query_password,
            # Our RetryPolicy retries, with backoff; the SDK's own retry has none.
            runtime_options=util_models.RuntimeOptions(connect_timeout=timeout_ms, read_timeout=timeout_ms,
                                                       autoretry=False),
        ))

    def push(self, body: str) -> dict:
        """Send one request body (a JSON array, sent as it is); the answer must say ``OK``."""
        request = self._models.PushDocumentsRequestModel(headers={}, body=body)
        try:
            response = self._client.push_documents(self.data_source, self.key_field, request)
        except Exception as exc:
            raise translate_push_error(exc, self.conn, self.data_source) from None
        try:
            answer = json.loads(response.body) if isinstance(response.body, str) else dict(response.body or {})
        except ValueError:
            raise OpenSearchError(f"push to {self.data_source}: the answer is not JSON: {str(response.body)[:200]}") from None
        if str(answer.get("status", "")).upper() != "OK" or ha_errors(answer):
            raise _push_refused(answer.get("errors") or [], self.data_source, 200)
        return answer


def _push_refused(errors: list[dict], data_source: str, status: int) -> OpenSearchError:
    codes = {int(e["code"]) for e in errors if isinstance(e, dict) and str(e.get("code", "")).isdigit()}
    detail = json.dumps(errors, ensure_ascii=False)[:500]
    if codes & TRANSIENT_PUSH_CODES or status == 429 or status >= 500:
        return TransientOpenSearchError(f"push to {data_source}: the service answered {status} {detail}; "
                                        "throttled or failing, retried with backoff")
    return OpenSearchError(f"push to {data_source}: refused with {status} {detail}")


def translate_push_error(exc: Exception, conn: OpenSearchConnection, data_source: str) -> PipelineError:
    from Tea.exceptions import TeaException, UnretryableException

    where = f"push endpoint {conn.query_endpoint} (connection {conn.conn_id!r})"
    if isinstance(exc, (UnretryableException, OSError)):
        return TransientOpenSearchError(f"push to {data_source}: cannot reach {where}")
    if isinstance(exc, TeaException):
        status = exc.code if isinstance(exc.code, int) else 0
        body = (exc.data or {}).get("errors") if isinstance(exc.data, dict) else None
        errors = body.get("errors") if isinstance(body, dict) else None
        if status in (401, 403):
            return OpenSearchAccessError(f"push to {data_source}: {where} refused the query user/password "
                                         f"({status}); check login and password of connection {conn.conn_id!r}")
        if status == 404:
            return OpenSearchAccessError(f"push to {data_source}: {where} knows no such data source ({status} "
                                         f"{json.dumps(body, ensure_ascii=False)[:300]}); set "
                                         "opensearch.rebuild.push.data_source to the table's push data source")
        if isinstance(errors, list):
            return _push_refused(errors, data_source, status)
        if status == 429 or status >= 500:
            return TransientOpenSearchError(f"push to {data_source}: {where} answered {status}: {exc.message}")
        return OpenSearchError(f"push to {data_source}: {where} answered {status}: {exc.message}")
    return OpenSearchError(f"push to {data_source}: {where} failed: {type(exc).__name__}")


@dataclass
class PushProgress:
    """What a delta run pushed so far: kept after each answered request, so a retry resumes there."""

    ds: str
    live_ds: str
    after_pk: int | None = None  # every change with a smaller or equal id has been answered OK
    requests: int = 0
    adds: int = 0
    deletes: int = 0
    bytes: int = 0  # request bodies answered OK
    document_bytes: int = 0  # the documents in them, without the array's brackets and commas
    retried_requests: int = 0
    rate_wait_s: float = 0.0
    first_push_at: float | None = None  # epoch seconds: pushes replay from here (see rebuild.py)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PushProgress:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def push_changes(
    pusher: Any,
    changes: Iterable[Change],
    settings: PushConfig,
    progress: PushProgress,
    *,
    remember: Callable[[PushProgress], None] = lambda _p: None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PushProgress:
    """Push ``changes`` (in id order, after ``progress.after_pk``) in packed, paced, retried requests."""
    retry = retry or RetryPolicy(attempts=8, initial_wait_s=0.5, max_wait_s=30.0, sleep=sleep)
    packer, rate = RequestPacker(settings.max_request_bytes), ByteRate(settings.max_bytes_per_second, monotonic, sleep)
    started = monotonic()
    attempts = 0

    def send(request: PackedRequest) -> None:
        nonlocal attempts
        if progress.first_push_at is None:
            progress.first_push_at = clock()
            remember(progress)  # before the first byte: the index has pushes from this moment on

        def once() -> dict:
            nonlocal attempts
            attempts += 1
            rate.acquire(request.size)
            return pusher.push(request.body())

        before = attempts
        retry.call(f"push of {request.adds + request.deletes} documents up to id {request.last_pk}", once)
        progress.retried_requests += attempts - before - 1
        progress.requests += 1
        progress.adds += request.adds
        progress.deletes += request.deletes
        progress.bytes += request.size
        progress.document_bytes += sum(len(part) for part in request.parts)
        progress.after_pk = request.last_pk
        progress.rate_wait_s = round(rate.waited_s, 3)
        remember(progress)

    for change in changes:
        if progress.after_pk is not None and change.pk <= progress.after_pk:
            continue  # answered by an earlier attempt
        full = packer.add(change, change.encode(pusher.key_field))
        if full is not None:
            send(full)
    last = packer.flush()
    if last is not None:
        send(last)
    progress.seconds = round(progress.seconds + monotonic() - started, 3)
    remember(progress)
    log.info("pushed %d adds and %d deletes to %s in %d requests (%d bytes, %d retried, %.1f s waiting for the rate)",
             progress.adds, progress.deletes, pusher.data_source, progress.requests, progress.bytes,
             progress.retried_requests, progress.rate_wait_s)
    return progress


# -- verification -----------------------------------------------------------------------------------


def _expected(row: Mapping[str, Any]) -> dict[str, str]:
    """A pushed row's fields as the summary carries them (strings)."""
    return {name: str(row[name]) for name in DOCUMENT_FIELDS}


def lookup(query: OpenSearchQuery, settings: Any, pks: list[int]) -> dict[int, dict[str, Any]]:
    """The documents the index answers for ``pks`` (primary-key lookup), by id."""
    from pipeline.opensearch.ha.grammar import build_pk_lookup_query

    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(pks), LOOKUP_BATCH):
        chunk = pks[start:start + LOOKUP_BATCH]
        result = query.search(build_pk_lookup_query(settings.primary_key, chunk, cluster=settings.cluster))
        errors = ha_errors(result)
        if errors:
            raise OpenSearchError(f"primary-key lookup of {len(chunk)} ids answered errors: {errors}")
        for hit in ha_hits(result):
            value = hit.fields.get(settings.primary_key)
            try:
                found[int(str(value))] = hit.fields
            except (TypeError, ValueError):
                continue
    return found


def verify_changes(
    query: OpenSearchQuery,
    settings: Any,
    changes: Iterable[Change],
    *,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll primary-key lookups until every add answers with its pushed fields and every delete is gone.

    Raises :class:`DeltaNotAppliedError` naming the ids that never did within ``timeout_s``."""
    adds: dict[int, dict[str, str]] = {}
    deletes: set[int] = set()
    for change in changes:
        if change.cmd == "add":
            adds[change.pk] = _expected(change.row or {})
        else:
            deletes.add(change.pk)
    started = clock()
    deadline = started + timeout_s
    pending_adds, pending_deletes = dict(adds), set(deletes)
    rounds = 0
    wrong: dict[int, str] = {}
    while True:
        rounds += 1
        found = lookup(query, settings, sorted(pending_adds) + sorted(pending_deletes))
        wrong = {}
        for pk, fields in list(pending_adds.items()):
            got = found.get(pk)
            if got is not None and all(str(got.get(k)) == v for k, v in fields.items()):
                del pending_adds[pk]
            else:
                wrong[pk] = "not found" if got is None else (
                    "answers " + ", ".join(f"{k}={got.get(k)!s}" for k in fields if str(got.get(k)) != fields[k]))
        pending_deletes = {pk for pk in pending_deletes if pk in found}
        if not pending_adds and not pending_deletes:
            break
        if clock() >= deadline:
            raise DeltaNotAppliedError(_not_applied_message(pending_adds, wrong, pending_deletes, len(adds),
                                                            len(deletes), timeout_s))
        log.info("verifying pushes: %d of %d adds and %d of %d deletes not applied yet; next look in %.1f s",
                 len(pending_adds), len(adds), len(pending_deletes), len(deletes), poll_s)
        sleep(min(poll_s, max(0.0, deadline - clock())))
    seconds = round(clock() - started, 3)
    log.info("all %d pushed adds answer and all %d deletes are gone (%d lookups, %.1f s)", len(adds), len(deletes),
             rounds, seconds)
    return {"verified_adds": len(adds), "verified_deletes": len(deletes), "rounds": rounds, "seconds": seconds}


def _not_applied_message(pending_adds: Mapping[int, Any], wrong: Mapping[int, str], pending_deletes: set[int],
                         adds: int, deletes: int, timeout_s: float) -> str:
    parts = []
    if pending_adds:
        named = ", ".join(f"{pk} ({wrong.get(pk, 'not found')})" for pk in sorted(pending_adds)[:_MAX_NAMED])
        parts.append(f"{len(pending_adds)} of {adds} pushed documents do not answer as pushed, e.g. {named}")
    if pending_deletes:
        named = ", ".join(str(pk) for pk in sorted(pending_deletes)[:_MAX_NAMED])
        parts.append(f"{len(pending_deletes)} of {deletes} deleted documents still answer: {named}")
    return ("; ".join(parts) + f", {timeout_s:.0f} s after the service answered every push OK (received, not "
            "applied). Pushes were lost or are applied late: look at the instance's data-source errors in the "
            "console; rerunning the run pushes the changes again (add and delete are idempotent), or run with "
            "rebuild_mode=full to rebuild the index from the partition")

