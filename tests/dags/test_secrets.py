"""No access key secret, STS token or query password ever appears in logs, reports or errors.

The DAG runs with RAM-role connections: a known long-lived key assumes a role at the local STS, and
every temporary secret and token the STS issues is recorded. It runs once successfully and once with a
wrong OSS source secret so that error paths are exercised too; then every byte it printed, logged or
wrote is searched for all of them.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_secrets_never_leak(airflow_db, demo_stack, monkeypatch: pytest.MonkeyPatch, capfd, caplog) -> None:
    from airflow.dag_processing.dagbag import DagBag

    _, stack, _ = demo_stack
    issued = []
    real_issue = stack.authority.issue

    def recording_issue(*args, **kwargs):
        issued.append(real_issue(*args, **kwargs))
        return issued[-1]

    monkeypatch.setattr(stack.authority, "issue", recording_issue)
    for conn_id, conn in stack.connections("ram_role_arn").items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    for task in dag.tasks:
        task.retries = 0
    good = dag.test(logical_date=None, run_conf={"partition_date": "2027-02-01", "allow_future_partition": True})
    assert good.state == "success"
    assert issued, "the run must have used temporary credentials"
    known = [stack.secrets.access_key_secret, stack.secrets.query_password,
             *(c.access_key_secret for c in issued), *(c.security_token for c in issued)]

    wrong = "wrong-" + secrets.token_urlsafe(12)
    bad_oss = json.loads(os.environ["AIRFLOW_CONN_OSS_LOCAL"])
    bad_oss["extra"]["access_key_secret"] = wrong
    monkeypatch.setenv("AIRFLOW_CONN_OSS_LOCAL", json.dumps(bad_oss))
    bad = dag.test(logical_date=None, run_conf={"partition_date": "2027-02-02", "allow_future_partition": True})
    assert bad.state == "failed"
    known.append(wrong)

    out, err = capfd.readouterr()
    haystacks = {
        "stdout": out,
        "stderr": err,
        "log records": "\n".join(r.getMessage() for r in caplog.records),
        "Airflow logs": _all_text(Path(os.environ["AIRFLOW_HOME"]) / "logs") if (Path(os.environ["AIRFLOW_HOME"]) / "logs").exists() else "",
        "reports": _all_text(Path(os.environ["PIPELINE_REPORT_DIR"])),
    }
    assert "SignatureDoesNotMatch" in out + err + haystacks["log records"]  # the failure was reported...
    for where, text in haystacks.items():
        for secret in known:
            assert secret not in text, f"a secret leaked into {where}"  # ...without any secret in it
