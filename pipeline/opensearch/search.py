"""HA-syntax queries through the HA3 query SDK (``alibabacloud-ha3engine``), and reading their answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.errors import OpenSearchAccessError, OpenSearchError, TransientOpenSearchError
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.retry import RetryPolicy


@dataclass(frozen=True)
class SearchHit:
    fields: dict[str, Any]
    score: float | None


class OpenSearchQuery:
    """HA-syntax queries through the HA3 query SDK. The body comes back as a JSON string."""

    def __init__(self, conn: OpenSearchConnection, retry: RetryPolicy | None = None) -> None:
        from alibabacloud_ha3engine import client, models
        from alibabacloud_tea_util import models as util_models

        self.conn = conn
        self._retry = retry or RetryPolicy(attempts=3)
        self._models = models
        timeout_ms = int(conn.timeout_s * 1000)
        self._client = client.Client(
            models.Config(
                endpoint=conn.query_endpoint,
                instance_id=conn.instance_id,
                protocol=conn.query_protocol,
                access_user_name=conn.query_user,
                access_pass_word=conn.query_password,
                # Our RetryPolicy retries; the SDK's own retry would multiply attempts without backoff.
                runtime_options=util_models.RuntimeOptions(
                    connect_timeout=timeout_ms, read_timeout=timeout_ms, autoretry=False
                ),
            )
        )

    def search(self, query: str, method: str = "POST") -> dict:
        """Run one HA query (POST keeps Base64 images out of URLs); raise on transport or HA errors."""

        def once() -> dict:
            request = self._models.SearchRequestModel({}, self._models.SearchQuery(query=query))
            request.method = method
            try:
                response = self._client.search(request)
            except Exception as exc:
                raise _translate_query_error(exc, self.conn) from None
            body = response.body
            try:
                return json.loads(body) if isinstance(body, str) else dict(body)
            except ValueError:
                raise OpenSearchError(f"query on {self.conn.query_endpoint}: answer is not JSON: {str(body)[:200]}") from None

        return self._retry.call("HA query", once)


def _translate_query_error(exc: Exception, conn: OpenSearchConnection) -> OpenSearchError:
    from Tea.exceptions import TeaException, UnretryableException

    where = f"query endpoint {conn.query_endpoint} (connection {conn.conn_id!r})"
    if isinstance(exc, UnretryableException) or isinstance(exc, OSError):
        return TransientOpenSearchError(f"HA query: cannot reach {where}")
    if isinstance(exc, TeaException):
        status = exc.code
        errors = (exc.data or {}).get("errors") if isinstance(exc.data, dict) else None
        detail = json.dumps(errors, ensure_ascii=False)[:500] if errors else exc.message
        if status in (401, 403):
            return OpenSearchAccessError(
                f"HA query: {where} refused the query user/password ({status}); check login and password "
                f"of connection {conn.conn_id!r}"
            )
        if isinstance(status, int) and (status >= 500 or status == 429):
            return TransientOpenSearchError(f"HA query: {where} answered {status}: {detail}")
        return OpenSearchError(f"HA query: {where} answered {status}: {detail}")
    return OpenSearchError(f"HA query: {where} failed: {type(exc).__name__}")


def ha_errors(result: dict) -> list[dict]:
    """The ``errors`` list of an HA JSON answer (empty when the query succeeded)."""
    return [e for e in result.get("errors") or [] if e]


def ha_hits(result: dict) -> list[SearchHit]:
    items = (result.get("result") or {}).get("items") or []
    hits = []
    for item in items:
        scores = item.get("sortExprValues") or []
        try:
            score = float(scores[0]) if scores else None
        except (TypeError, ValueError):
            score = None
        hits.append(SearchHit(dict(item.get("fields") or {}), score))
    return hits
