"""The report page's HTML, rendered on the server from the reports (no script, no build step).

Every value from a report or a config is escaped: reports carry error messages, which may hold any
text. Links are absolute paths under ``root`` (the plugin app's mount point, with Airflow's base URL),
so the pages work behind a proxy prefix and inside the Airflow UI's frame.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from pipeline.airflow.plugin.chart import runs_chart
from pipeline.config import IndexConfig
from pipeline.report import failure_text

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}.muted{color:#656d76}
nav{margin-bottom:12px;font-size:13px}table{border-collapse:collapse;margin:4px 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff}
.success{background:#1a7f37}.failed{background:#cf222e}.dry_run,.rebuild_skipped{background:#9a6700}.unknown{background:#656d76}
pre.message{background:#fff1f0;border:1px solid #ffcecb;padding:8px;white-space:pre-wrap;max-width:1100px;margin:4px 0}
.smoke{border:1px solid #d0d7de;border-radius:6px;padding:10px;margin:10px 0}
.hits{display:flex;flex-wrap:wrap;gap:10px;margin-top:8px}
figure{margin:0;width:132px;font-size:12px}figure img,.noimg{width:128px;height:128px;object-fit:contain;
border:1px solid #d0d7de;border-radius:4px;background:#f6f8fa;display:block}
.noimg{display:flex;align-items:center;justify-content:center;color:#656d76;text-align:center;font-size:11px}
figure.self img{border:2px solid #1a7f37}.query{display:flex;gap:14px;align-items:flex-start}
.chart-title{font-size:12px;font-weight:600;fill:#1f2328}.tick{font-size:10px;fill:#656d76}
.axis{stroke:#8c959f}.grid{stroke:#eaeef2;stroke-dasharray:3 3}
.legend{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""

ImageUrl = Callable[[Any], "str | None"]


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def index_href(root: str, index: str) -> str:
    return f"{root}/indexes/{quote(index, safe='')}"


def run_href(root: str, index: str, report: str) -> str:
    return f"{index_href(root, index)}/run?{urlencode({'report': report})}"


def layout(title: str, body: str, crumbs: list[tuple[str, str | None]]) -> str:
    trail = " / ".join(f'<a href="{_e(href)}">{_e(text)}</a>' if href else _e(text) for text, href in crumbs)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head>'
        f"<body><nav>{trail}</nav>{body}</body></html>"
    )


def outcome_badge(outcome: Any) -> str:
    text = str(outcome or "unknown")
    css = text if text in ("success", "failed", "dry_run", "rebuild_skipped") else "unknown"
    return f'<span class="badge {css}">{_e(text.replace("_", " "))}</span>'


def _reason(entry: dict) -> str:
    if entry.get("outcome") == "success":
        return ""
    failed = entry.get("failed_tasks") or []
    where = f"<b>{_e(', '.join(map(str, failed)))}</b>: " if failed else ""
    return where + _e(entry.get("message") or "")


def index_list_page(root: str, rows: list[dict], error: str | None = None) -> str:
    """``rows``: name, description, dag_id, runs (count shown), latest (the newest runs.jsonl entry)."""
    body = ['<h1>Image index reports</h1><p class="muted">One row per index config; newest run first.</p>']
    if error:
        body.append(f'<pre class="message">{_e(error)}</pre>')
    if not rows:
        body.append('<p class="muted">No index whose DAG you may read.</p>')
    else:
        body.append("<table id=\"indexes\"><tr><th>index</th><th>DAG</th><th>runs</th><th>latest ds</th>"
                    "<th>outcome</th><th>reason</th></tr>")
        for row in rows:
            latest = row.get("latest") or {}
            body.append(
                f'<tr><td><a href="{_e(index_href(root, row["name"]))}">{_e(row["name"])}</a>'
                f'<div class="muted">{_e(row.get("description"))}</div></td><td>{_e(row["dag_id"])}</td>'
                f'<td class="num">{_e(row.get("runs"))}</td><td>{_e(latest.get("ds"))}</td>'
                f"<td>{outcome_badge(latest.get('outcome')) if latest else ''}</td><td>{_reason(latest) if latest else ''}</td></tr>"
            )
        body.append("</table>")
    return layout("Image index reports", "".join(body), [("Image index reports", None)])


def index_page(root: str, config: IndexConfig, dag_id: str, entries: list[dict], points: list[dict], limit: int) -> str:
    """An index's runs: the chart of their figures over time, then a table, newest first."""
    name = config.name
    body = [
        f"<h1>Index {_e(name)}</h1>",
        f'<p class="muted">{_e(config.description)} DAG <code>{_e(dag_id)}</code>, bucket '
        f"<code>{_e(config.source.bucket)}</code>, table <code>{_e(config.warehouse.table)}</code>"
        + (f", OpenSearch table <code>{_e(config.opensearch.table)}</code>" if config.opensearch else "")
        + ".</p>",
        f"<h2>Runs over time</h2>{runs_chart(points)}",
        "<h2>Runs</h2>",
    ]
    if len(entries) >= limit:
        body.append(f'<p class="muted">The newest {limit} runs.</p>')
    if entries:
        by_report = {p["report"]: p for p in points}
        body.append('<table id="runs"><tr><th>ds</th><th>run</th><th>type</th><th>outcome</th><th class="num">rows</th>'
                    '<th class="num">added</th><th class="num">removed</th><th class="num">build min</th><th>reason</th></tr>')
        for entry in entries:
            point = by_report.get(entry["report"]) or {}
            cells = "".join(
                f'<td class="num">{_e("" if point.get(k) is None else (round(point[k], 2) if k == "build_minutes" else int(point[k])))}</td>'
                for k in ("rows", "added", "removed", "build_minutes")
            )
            body.append(
                f'<tr class="run" data-ds="{_e(entry.get("ds"))}"><td>{_e(entry.get("ds"))}</td>'
                f'<td><a href="{_e(run_href(root, name, entry["report"]))}">{_e(entry.get("run_id"))}</a></td>'
                f'<td>{_e(entry.get("run_type"))}</td><td>{outcome_badge(entry.get("outcome"))}</td>{cells}'
                f"<td>{_reason(entry)}</td></tr>"
            )
        body.append("</table>")
    else:
        body.append('<p class="muted">No runs reported yet.</p>')
    return layout(f"Index {name}", "".join(body), [("Image index reports", f"{root}/"), (name, None)])


def _table(rows: list[tuple[str, Any]], table_id: str) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<table id="{table_id}">{cells}</table>'


def _headline(report: dict) -> str:
    outcome = report.get("outcome")
    failed = report.get("failed_tasks") or []
    parts = [f'<p id="run-outcome">{outcome_badge(outcome)}']
    if outcome == "failed" and failed:
        parts.append(f' failed at <b id="failed-task">{_e(failed[0].get("task_id"))}</b></p>')
        for n, failure in enumerate(failed):
            label = "" if n == 0 else f"also failed: <b>{_e(failure.get('task_id'))}</b>"
            tries = f' <span class="muted">(try {_e(failure.get("try_number"))})</span>' if failure.get("try_number") else ""
            parts.append(f'{label}{tries}<pre class="message" data-task="{_e(failure.get("task_id"))}">{_e(failure_text(failure))}</pre>')
    elif report.get("outcome_reason"):
        parts.append(f' {_e(report["outcome_reason"])}</p>')
    else:
        parts.append("</p>")
    not_run = [t for t, seen in (report.get("tasks") or {}).items() if isinstance(seen, dict) and seen.get("state") == "upstream_failed"]
    if not_run:
        parts.append(f'<p class="muted">Not run (an upstream task failed): {_e(", ".join(not_run))}</p>')
    return "".join(parts)


def _figures(report: dict) -> str:
    load = report.get("load") or {}
    stats = report.get("partition") or {}
    changes = report.get("id_changes") or {}
    rebuild = report.get("rebuild") or {}
    skipped = {k: v for k, v in (load.get("skipped") or {}).items() if v}
    rows: list[tuple[str, Any]] = [
        ("objects listed", _e(load.get("listed")) + (f" in {_e(load.get('pages'))} pages" if load.get("pages") else "")),
        ("kept", _e(load.get("kept"))),
        ("skipped", (_e(load.get("skipped_total")) + " " + _e(", ".join(f"{k}: {v}" for k, v in skipped.items()))) if load else None),
        ("dry run", "yes: nothing written" if load.get("dry_run") else None),
        ("partition rows", _e(stats.get("rows"))),
        ("distinct ids", _e(stats.get("distinct_ids"))),
        ("rows per category", _e(", ".join(f"{k}: {v}" for k, v in (stats.get("rows_per_category") or {}).items()))),
        ("ids added / removed", f'<span id="ids-added">+{_e(changes.get("added"))}</span> / <span id="ids-removed">-{_e(changes.get("removed"))}</span>'
         f' against ds={_e(changes.get("previous_ds"))}' if changes else None),
        ("published into", _e((report.get("published") or {}).get("table"))),
        ("rebuild", _e(f"generation {rebuild.get('generation_id')}: {rebuild.get('outcome') or 'not finished'}" if rebuild.get("started")
                       else f"not started: {rebuild.get('reason')}") if rebuild else None),
        ("indexed", _e((rebuild.get("figures") or {}).get("summary"))),
        ("warnings", _e("; ".join(map(str, rebuild.get("warnings") or [])))),
        ("seconds", _e(", ".join(f"{k} {v}" for k, v in (report.get("seconds") or {}).items()))),
    ]
    return _table(rows, "figures")


def _run_facts(report: dict) -> str:
    run = report.get("run") or {}
    params = {k: v for k, v in (report.get("params") or {}).items() if v not in (None, False, [], "")}
    return _table([
        ("partition", _e(f"ds={report.get('ds')}")),
        ("run id", _e(run.get("run_id"))),
        ("run type", _e(run.get("run_type"))),
        ("triggered by", _e(run.get("triggering_user"))),
        ("started", _e(run.get("started_at"))),
        ("finished", _e(run.get("finished_at"))),
        ("cleared", _e(run.get("clear_number")) if run.get("clear_number") else None),
        ("params", _e(", ".join(f"{k}={v}" for k, v in params.items()))),
    ], "run-facts")


def _tasks(report: dict) -> str:
    tasks = report.get("tasks") or {}
    if not tasks:
        return ""
    rows = "".join(
        f"<tr><td>{_e(t)}</td><td>{_e(seen.get('state'))}</td><td class=\"num\">{_e(seen.get('seconds'))}</td></tr>"
        for t, seen in tasks.items() if isinstance(seen, dict)
    )
    return f'<h2>Tasks</h2><table id="tasks"><tr><th>task</th><th>state</th><th class="num">seconds</th></tr>{rows}</table>'


def _image(url: str | None, alt: str) -> str:
    if url is None:
        return '<div class="noimg">no image</div>'
    return f'<img class="thumb" src="{_e(url)}" alt="{_e(alt)}" loading="lazy" width="128" height="128">'


def _smoke(smoke: dict, images: dict[Any, str], image_url: ImageUrl) -> str:
    if smoke.get("kind") == "image":
        query_path = smoke.get("source_image")
        how = {"id": "found by its own id", "same_bytes": f"found through {smoke.get('matched_image')} (same bytes)"}.get(
            smoke.get("match") or "", "")
        head = (
            f'<div class="query">{_image(image_url(query_path), f"query image {query_path}")}<div>'
            f"<b>Image query</b> id <b>{_e(smoke.get('id'))}</b> <code>{_e(query_path)}</code><br>"
            f"rank <b class=\"rank\">{_e(smoke.get('rank'))}</b> {_e(how)} · {_e(smoke.get('seconds'))} s"
            f'<div class="muted">{_e(smoke.get("sampled"))}</div></div></div>'
        )
    else:
        head = f"<div><b>Text query</b> <code>{_e(smoke.get('text'))}</code></div>"
    hits = []
    for rank, hit in enumerate(smoke.get("top") or [], start=1):
        if not isinstance(hit, dict):
            continue
        hit_id = hit.get("id")
        score = hit.get("score")
        score_text = f"{score:.4f}" if isinstance(score, float) else _e(score)
        mine = smoke.get("kind") == "image" and hit_id == smoke.get("id")
        hits.append(
            f'<figure class="hit{" self" if mine else ""}" data-rank="{rank}" data-id="{_e(hit_id)}">'
            f"{_image(image_url(images.get(hit_id)), f'hit {rank}: id {hit_id}')}"
            f"<figcaption>#{rank} id {_e(hit_id)}<br>score {score_text}</figcaption></figure>"
        )
    return f'<div class="smoke" data-kind="{_e(smoke.get("kind"))}">{head}<div class="hits">{"".join(hits)}</div></div>'


def run_page(root: str, config: IndexConfig, report: dict, images: dict[Any, str], image_url: ImageUrl,
             note: str | None = None) -> str:
    """One run: outcome (the failing task and its message), figures, smoke queries with the query image
    and the top hits as thumbnails, then the run's facts and its tasks. ``images``: hit id -> image path; ``image_url``:
    the thumbnail link of an image path, None when the page may not show it."""
    name = config.name
    run_id = (report.get("run") or {}).get("run_id")
    body = [f"<h1>Run {_e(run_id)}</h1>", _headline(report), "<h2>Figures</h2>", _figures(report)]
    smokes = [s for s in report.get("smoke_queries") or [] if isinstance(s, dict)]
    body.append("<h2>Smoke queries</h2>")
    if note:
        body.append(f'<p class="muted" id="images-note">{_e(note)}</p>')
    if smokes:
        body.extend(_smoke(s, images, image_url) for s in smokes)
    else:
        body.append('<p class="muted">None: the run did not reach the smoke query.</p>')
    body += ["<h2>Run</h2>", _run_facts(report), _tasks(report)]
    crumbs = [("Image index reports", f"{root}/"), (name, index_href(root, name)), (f"ds={report.get('ds')}", None)]
    return layout(f"{name} {run_id}", "".join(body), crumbs)
