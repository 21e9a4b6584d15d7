"""The pipeline's metrics: names, values, and that sending one never fails a task (the wire:
tests/dags/test_lineage_and_metrics.py)."""

from __future__ import annotations

import logging

from pipeline.airflow.metrics import load_metrics, push_metrics, send_gauges, wait_metrics


def test_gauges_are_named_under_the_index_and_tagged_with_it(monkeypatch) -> None:
    from airflow.sdk.observability import stats

    sent = []
    monkeypatch.setattr(stats, "gauge", lambda name, value, **kw: sent.append((name, value, kw.get("tags"))))
    send_gauges("demo", {"rows": 320, "skipped.bad_id": 0, "wait_seconds": None, "build_seconds": 3.25})
    assert sent == [("image_index.demo.rows", 320, {"index": "demo"}),
                    ("image_index.demo.skipped.bad_id", 0, {"index": "demo"}),  # None: not sent
                    ("image_index.demo.build_seconds", 3.25, {"index": "demo"})]
    assert all(type(value) is int for _, value, _ in sent[:2])  # on the wire: rows:320|g


def test_a_metric_that_cannot_be_sent_is_logged_not_raised(monkeypatch, caplog) -> None:
    from airflow.sdk.observability import stats

    def broken(*args, **kwargs):
        raise OSError("no route to the StatsD host")

    monkeypatch.setattr(stats, "gauge", broken)
    with caplog.at_level(logging.WARNING, logger="pipeline.airflow.metrics"):
        send_gauges("demo", {"rows": 1})
    assert "could not send the metrics of index demo: OSError" in caplog.text


def test_the_figures_of_a_load_a_wait_and_a_push() -> None:
    load = {"listed": 336, "rows_written": 320, "seconds": 1.5, "dry_run": False,
            "skipped": {"bad_id": 1, "too_small": 0}}
    assert load_metrics(load) == {"keys_listed": 336, "load_seconds": 1.5, "rows": 320,
                                  "skipped.bad_id": 1, "skipped.too_small": 0}
    assert "rows" not in load_metrics({**load, "dry_run": True, "rows_written": None})
    assert wait_metrics({"started_at": 100.0}, 160.5, 130.0) == {"build_seconds": 60.5, "wait_seconds": 30.5}
    assert wait_metrics({"started_at": 100.0}, 160.5, None) == {"build_seconds": 60.5, "wait_seconds": None}
    assert push_metrics({"seconds": 2.0, "adds": 3, "deletes": 2}) == {"push_seconds": 2.0, "pushed_documents": 5}
