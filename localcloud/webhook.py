"""A local chat webhook receiver: what Slack's incoming webhooks and DingTalk's custom robots answer, and a
record of every request, so the alerts' real clients (the providers' hooks) can be pointed at it.

    POST /services/<T...>/<B...>/<secret>     Slack incoming webhook: 200 ``ok`` (text/html)
    POST /robot/send?access_token=<token>     DingTalk custom robot: 200 ``{"errcode": 0, "errmsg": "ok"}``

Checked as the services check (the answers are the documented ones; the exact error codes of each
refusal are our best reading of the vendors' docs, unverified against the live services):

* Slack: a body that is not a JSON object is 400 ``invalid_payload``; one with neither ``text`` nor
  ``blocks`` is 400 ``no_text``; a path that is no webhook is 404 ``no_service``.
* DingTalk: no ``access_token`` is ``{"errcode": 300001, "errmsg": "token is not exist"}`` (the robot API
  answers HTTP 200 with an errcode); a body that is not JSON, or without a known ``msgtype`` and its
  content, is errcode 40035; ``tokens`` (when given) are the robots that exist: another token is 300001.

Fault knob: ``fail_next`` requests are answered as a service in trouble: Slack 500 ``rollup_error``,
DingTalk errcode 130101 ("send too fast", its rate limit). Every request, answered or refused, is
recorded (:attr:`LocalWebhookReceiver.requests`): method, path, query, headers, body and its JSON.

Offline use: ``python -m localcloud.webhook`` serves on a free port (or ``--port``) and prints the two
Airflow connections (``AIRFLOW_CONN_SLACK_LOCAL``, ``AIRFLOW_CONN_DINGTALK_LOCAL``) that point at it,
then one line per request received.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localcloud.http_service import BackgroundHttpService, Limits, StrictRequestHandler

SLACK_PREFIX = "/services/"
DINGTALK_PATH = "/robot/send"
DINGTALK_MSGTYPES = ("text", "markdown", "link", "actionCard", "feedCard")
#: The token parts of the connections :meth:`LocalWebhookReceiver.connections` hands out.
SLACK_TOKEN = "T00000000/B00000000/localwebhooksecret0000000"
DINGTALK_TOKEN = "local0dingtalk0robot0access0token"


@dataclass(frozen=True)
class WebhookRequest:
    """One request as it arrived."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)
    kind: str | None = None  # "slack", "dingtalk", or None for any other path
    status: int = 0  # what the receiver answered (HTTP status)


class LocalWebhookReceiver(BackgroundHttpService):
    """Records every request; answers as Slack's incoming webhook and DingTalk's robot API do."""

    name = "local-webhooks"
    limits = Limits(max_workers=8, max_connections=64, max_body=1024 * 1024)

    def __init__(self, port: int = 0, *, tokens: set[str] | None = None, fail_next: int = 0) -> None:
        super().__init__(port)
        self.tokens = tokens  # DingTalk robots that exist (None: any token)
        self.fail_next = fail_next
        self._requests: list[WebhookRequest] = []
        self._lock = threading.Condition()
        self.on_request: Any = None  # optional callable(WebhookRequest), e.g. the CLI's printer

    def handler_class(self) -> type[StrictRequestHandler]:
        return type("WebhookHandler", (_WebhookHandler,), {"service": self})

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # -- what arrived ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[WebhookRequest]:
        with self._lock:
            return list(self._requests)

    def received(self, kind: str) -> list[WebhookRequest]:
        """The requests that reached the ``kind`` ("slack" or "dingtalk") endpoint, oldest first."""
        return [r for r in self.requests if r.kind == kind]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[WebhookRequest]:
        """Wait until at least ``count`` requests arrived (or the timeout passed); all of them."""
        with self._lock:
            self._lock.wait_for(lambda: len(self._requests) >= count, timeout=timeout_s)
            return list(self._requests)

    def record(self, request: WebhookRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()
        if self.on_request is not None:
            self.on_request(request)

    def take_fault(self) -> bool:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    # -- the Airflow connections that point at it --------------------------------------------------

    def connections(self, slack_conn_id: str = "slack_local", dingtalk_conn_id: str = "dingtalk_local") -> dict:
        """``{conn_id: connection JSON}``: a ``slackwebhook`` (host + password = the webhook's token
        path) and a ``dingding`` one (host + password = the robot's access token), as users create them
        for the real services with another host (``hooks.slack.com/services``, ``https://oapi.dingtalk.com``)."""
        return {
            slack_conn_id: {"conn_type": "slackwebhook", "host": f"{self.url}/services", "password": SLACK_TOKEN},
            dingtalk_conn_id: {"conn_type": "dingding", "host": self.url, "password": DINGTALK_TOKEN},
        }

    def environment(self, slack_conn_id: str = "slack_local", dingtalk_conn_id: str = "dingtalk_local") -> dict:
        """The connections as ``AIRFLOW_CONN_<ID>`` variables."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
                for conn_id, conn in self.connections(slack_conn_id, dingtalk_conn_id).items()}


class _WebhookHandler(StrictRequestHandler):
    service: LocalWebhookReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the receiver records requests instead."""

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _slack(self, payload: Any) -> tuple[int, bytes, str]:
        def say(status: int, text: str) -> tuple[int, bytes, str]:
            return status, text.encode(), "text/html"

        if self.service.take_fault():
            return say(500, "rollup_error")
        if not isinstance(payload, dict):
            return say(400, "invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return say(400, "no_text")
        return say(200, "ok")

    def _dingtalk(self, payload: Any, token: str | None) -> tuple[int, bytes, str]:
        def say(errcode: int, errmsg: str) -> tuple[int, bytes, str]:
            return 200, json.dumps({"errcode": errcode, "errmsg": errmsg}).encode(), "application/json;charset=utf-8"

        if not token or (self.service.tokens is not None and token not in self.service.tokens):
            return say(300001, "token is not exist")
        if self.service.take_fault():
            return say(130101, "send too fast, exceed 20 times per minute")
        msgtype = payload.get("msgtype") if isinstance(payload, dict) else None
        if msgtype not in DINGTALK_MSGTYPES or not isinstance(payload.get(msgtype), dict):
            return say(40035, "缺少参数 json")  # "missing parameter json": what the robot API answers
        return say(0, "ok")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        body = self.body.read()
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        kind: str | None
        if parts.path.startswith(SLACK_PREFIX) and len(parts.path) > len(SLACK_PREFIX):
            kind, answer = "slack", self._slack(payload)
        elif parts.path == DINGTALK_PATH:
            kind, answer = "dingtalk", self._dingtalk(payload, (query.get("access_token") or [None])[0])
        else:
            kind, answer = None, (404, b"no_service", "text/html")
        # Recorded before the answer goes out: a client that got its answer finds its request recorded.
        self.service.record(WebhookRequest(
            method="POST", path=parts.path, query=query, headers={k: v for k, v in self.headers.items()},
            body=body, json=payload, kind=kind, status=answer[0],
        ))
        self._answer(*answer)

    def do_GET(self) -> None:
        self.service.record(WebhookRequest(method="GET", path=urlsplit(self.path).path, query={},
                                           headers={k: v for k, v in self.headers.items()}, body=b"", status=405))
        self._answer(405, b"method_not_allowed", "text/html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.webhook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    receiver = LocalWebhookReceiver(args.port).start()

    def show(request: WebhookRequest) -> None:
        text = json.dumps(request.json, ensure_ascii=False) if request.json is not None else repr(request.body[:200])
        print(f"{request.kind or '-'} {request.method} {request.path} -> {request.status}: {text}", flush=True)

    receiver.on_request = show
    print(f"webhook receiver on {receiver.url}; the Airflow connections that point at it:", flush=True)
    for name, value in receiver.environment().items():
        print(f"export {name}='{value}'", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
