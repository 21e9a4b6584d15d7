"""An example consumer of an image index: runs each time the demo index goes live (README: Assets).

A team that depends on the index (a recommendation job, a cache warmer, an evaluation) schedules on the
index's live asset instead of polling. The asset is named by its name and URI exactly as the index's
DAG declares it (``image_index.<name>.live``; the URI from the config's ``assets.index_uri``, here the
default ``opensearch://<opensearch.conn_id>/<opensearch.table>``). This one is a "cache warmer" that
queries nothing: it reads the triggering event's extra and says what it would warm.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import Asset, dag, task

#: The demo index's live OpenSearch table (dags/indexes/demo.yaml): an event each time a partition is
#: proven live by the index's smoke query, with ds, mode, generation_id and the counts in its extra.
DEMO_INDEX_LIVE = Asset(name="image_index.demo.live", uri="opensearch://opensearch_local/demo_images")

log = logging.getLogger(__name__)


@dag(
    dag_id="example_downstream",
    schedule=[DEMO_INDEX_LIVE],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1},
    tags=["example", "image-search", "index:demo"],
    doc_md=__doc__,
)
def example_downstream() -> None:
    @task
    def warm_cache(*, triggering_asset_events=None) -> dict:
        # Events that arrived while no run was queued yet come together: the newest one is what is live.
        events = sorted(triggering_asset_events[DEMO_INDEX_LIVE], key=lambda event: event.timestamp)
        extra = dict(events[-1].extra)
        what = (f"would warm the image cache for index {extra.get('index')} ds={extra.get('ds')}: "
                f"mode={extra.get('mode')} generation={extra.get('generation_id')} "
                f"added={extra.get('added')} removed={extra.get('removed')} (from {len(events)} event(s), "
                f"run {events[-1].source_run_id})")
        log.info("%s", what)
        return {"ds": extra.get("ds"), "mode": extra.get("mode"), "generation_id": extra.get("generation_id"),
                "events": len(events), "said": what}

    warm_cache()


example_downstream()
