"""The local webhook receiver: what it answers as Slack's incoming webhook and DingTalk's robot API, and
what it records, over real HTTP (requests). The alerts' own clients post to it in tests/dags/test_alerts.py
and tests/pipeline/airflow/test_notify.py."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest
import requests

from localcloud.webhook import DINGTALK_TOKEN, SLACK_TOKEN, LocalWebhookReceiver


@pytest.fixture
def receiver():
    with LocalWebhookReceiver(tokens={DINGTALK_TOKEN}) as server:
        yield server


def slack_url(receiver: LocalWebhookReceiver) -> str:
    return f"{receiver.url}/services/{SLACK_TOKEN}"


def dingtalk_url(receiver: LocalWebhookReceiver, token: str | None = DINGTALK_TOKEN) -> str:
    return f"{receiver.url}/robot/send" + (f"?access_token={token}" if token else "")


def test_slack_posts_are_answered_ok_and_recorded_whole(receiver) -> None:
    answer = requests.post(slack_url(receiver), json={"text": "hello", "blocks": []}, timeout=5,
                           headers={"User-Agent": "test"})
    assert (answer.status_code, answer.text) == (200, "ok")
    (got,) = receiver.received("slack")
    assert (got.method, got.path, got.status, got.kind) == ("POST", f"/services/{SLACK_TOKEN}", 200, "slack")
    assert got.json == {"text": "hello", "blocks": []} and json.loads(got.body) == got.json
    assert got.headers["User-Agent"] == "test" and got.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("body", "status", "text"), [
    (b"not json", 400, "invalid_payload"),
    (b"[1, 2]", 400, "invalid_payload"),
    (b'{"unfurl_links": false}', 400, "no_text"),
])
def test_slack_refuses_what_slack_refuses(receiver, body: bytes, status: int, text: str) -> None:
    answer = requests.post(slack_url(receiver), data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert (answer.status_code, answer.text) == (status, text)
    assert [r.status for r in receiver.received("slack")] == [status]  # refused requests are recorded too


def test_dingtalk_posts_are_answered_with_errcode_0(receiver) -> None:
    message = {"msgtype": "markdown", "markdown": {"title": "t", "text": "# hi"}, "at": {"atMobiles": []}}
    answer = requests.post(dingtalk_url(receiver), json=message, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"errcode": 0, "errmsg": "ok"}
    (got,) = receiver.received("dingtalk")
    assert got.query == {"access_token": [DINGTALK_TOKEN]} and got.json == message


@pytest.mark.parametrize(("token", "body", "errcode"), [
    (None, {"msgtype": "text", "text": {"content": "x"}}, 300001),  # no token
    ("someone-elses", {"msgtype": "text", "text": {"content": "x"}}, 300001),  # no such robot
    (DINGTALK_TOKEN, {"msgtype": "poem", "poem": {}}, 40035),  # unknown message type
    (DINGTALK_TOKEN, {"msgtype": "markdown"}, 40035),  # the type's content missing
])
def test_dingtalk_refuses_with_the_robot_apis_errcodes(receiver, token, body, errcode: int) -> None:
    answer = requests.post(dingtalk_url(receiver, token), json=body, timeout=5)
    assert answer.status_code == 200 and answer.json()["errcode"] == errcode  # the robot API answers 200


def test_the_fault_knob_answers_as_a_service_in_trouble_then_recovers(receiver) -> None:
    receiver.fail_next = 2
    slack = requests.post(slack_url(receiver), json={"text": "x"}, timeout=5)
    dingtalk = requests.post(dingtalk_url(receiver), json={"msgtype": "text", "text": {"content": "x"}}, timeout=5)
    again = requests.post(slack_url(receiver), json={"text": "x"}, timeout=5)
    assert (slack.status_code, slack.text) == (500, "rollup_error")
    assert dingtalk.json() == {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    assert (again.status_code, again.text) == (200, "ok")


def test_other_paths_and_methods_are_no_webhook(receiver) -> None:
    assert requests.post(f"{receiver.url}/services/", json={"text": "x"}, timeout=5).status_code == 404
    assert requests.post(f"{receiver.url}/api/chat.postMessage", json={"text": "x"}, timeout=5).status_code == 404
    assert requests.get(slack_url(receiver), timeout=5).status_code == 405
    assert [r.kind for r in receiver.requests] == [None, None, None] and receiver.received("slack") == []


def test_wait_for_returns_once_enough_arrived(receiver) -> None:
    requests.post(slack_url(receiver), json={"text": "x"}, timeout=5)
    started = time.monotonic()
    assert len(receiver.wait_for(1, timeout_s=5)) == 1 and time.monotonic() - started < 1
    assert len(receiver.wait_for(2, timeout_s=0.2)) == 1  # the timeout, then what there is
    receiver.clear()
    assert receiver.requests == []


def test_the_connections_point_the_providers_forms_at_it(receiver) -> None:
    conns = receiver.connections("slack_x", "dingtalk_x")
    assert conns["slack_x"] == {"conn_type": "slackwebhook", "host": f"{receiver.url}/services", "password": SLACK_TOKEN}
    assert conns["dingtalk_x"] == {"conn_type": "dingding", "host": receiver.url, "password": DINGTALK_TOKEN}
    assert json.loads(receiver.environment("slack_x", "dingtalk_x")["AIRFLOW_CONN_SLACK_X"]) == conns["slack_x"]


def test_the_command_line_prints_the_connections_and_each_request() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "localcloud.webhook"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        lines = _read_lines(proc, 3)
        assert lines[0].startswith("webhook receiver on http://127.0.0.1:")
        url = lines[0].split(" on ")[1].split(";")[0]
        assert lines[1].startswith("export AIRFLOW_CONN_SLACK_LOCAL='{") and "slackwebhook" in lines[1]
        assert lines[2].startswith("export AIRFLOW_CONN_DINGTALK_LOCAL='{") and "dingding" in lines[2]
        requests.post(f"{url}/services/{SLACK_TOKEN}", json={"text": "hello"}, timeout=5)
        (line,) = _read_lines(proc, 1)
        assert line == f'slack POST /services/{SLACK_TOKEN} -> 200: {{"text": "hello"}}'
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def _read_lines(proc: subprocess.Popen, count: int, timeout_s: float = 20) -> list[str]:
    """The next ``count`` lines the process prints (bounded wait; unbuffered reads, so select stays true)."""
    assert proc.stdout is not None
    buffer = _PENDING.setdefault(proc.pid, bytearray())
    deadline = time.monotonic() + timeout_s
    while buffer.count(b"\n") < count and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
    lines = bytes(buffer).decode().split("\n")
    taken, rest = lines[:count], "\n".join(lines[count:])
    buffer[:] = rest.encode()
    assert len(taken) == count and all(taken), (taken, rest)
    return taken


_PENDING: dict[int, bytearray] = {}
