"""Smoke queries: prove that the index that just went live answers, with HA-syntax queries.

Image-to-image: an image sampled from the new partition, read from OSS and sent Base64-encoded (as the
vendor guide shows), must come back with its own id in the top k. Text-to-image (optional, from the
index config): the query must answer without errors and with at least ``text_min_hits`` hits.

Queries carry the vendor example's config, ``fetch_summary_type:pk,qrs_chain:search``: a query runs in
two phases (find documents, then fetch their summaries), and by default the summaries are fetched by
docid, which belongs to one generation; right at a switch the second phase can land on the other one
and the summaries go missing (error 10010). By primary key they are found in either. The primary key
comes back among the summary ``fields`` (Havenask's JSON hit: ``fields``, ``sortExprValues``, ...).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from pipeline.config import OpenSearchConfig
from pipeline.errors import SmokeQueryError
from pipeline.opensearch.ha.grammar import build_ha_query
from pipeline.opensearch.search import OpenSearchQuery, SearchHit, ha_errors, ha_hits

log = logging.getLogger(__name__)

# Sample among this many lowest-id rows: a bounded query on any warehouse, varied by the partition date.
SAMPLE_POOL = 1000
# As the vendor's SDK example sends it: summaries fetched by primary key, the ``search`` QRS chain.
VENDOR_CONFIG = {"fetch_summary_type": "pk", "qrs_chain": "search"}


def pick_samples(rows: list[dict], count: int, seed: str) -> list[dict]:
    """A deterministic pick (same partition, same samples): reruns test the same images."""
    return random.Random(seed).sample(rows, min(count, len(rows)))


def image_smoke_query(
    query: OpenSearchQuery,
    settings: OpenSearchConfig,
    row: dict,
    fetch_image: Callable[[str], bytes],
) -> dict[str, Any]:
    """Search with the image of ``row``; its id must be among the top ``settings.smoke.top_k`` hits."""
    key = row["source_image"].lstrip("/")
    image = fetch_image(key)
    k = settings.smoke.top_k
    started = time.monotonic()
    ha = build_ha_query(
        image, modal="image", n=k, hit=k, index=settings.vector_index, cluster=settings.cluster,
        formula=f"proxima_score({settings.vector_index})", sort=["+RANK"], config_extra=VENDOR_CONFIG,
    )
    result = query.search(ha)
    seconds = time.monotonic() - started
    errors = ha_errors(result)
    if errors:
        raise SmokeQueryError(f"image query for id {row['id']} ({row['source_image']}) answered errors: {errors}")
    hits = ha_hits(result)
    top = [{"id": _primary_key(h, settings), "score": h.score} for h in hits]
    ids = [t["id"] for t in top]
    outcome = {
        "kind": "image",
        "id": row["id"],
        "source_image": row["source_image"],
        "rank": ids.index(row["id"]) + 1 if row["id"] in ids else None,
        "top": top,
        "seconds": round(seconds, 3),
    }
    if outcome["rank"] is None:
        raise SmokeQueryError(
            f"image query with id {row['id']} ({row['source_image']}) did not find that id in the top {k}: got {ids}. "
            "The new index may be missing rows, or be another table's"
        )
    return outcome


def text_smoke_query(query: OpenSearchQuery, settings: OpenSearchConfig) -> dict[str, Any]:
    """Run the configured text query; fail on HA errors or too few hits."""
    text = settings.smoke.text_query or ""
    k = settings.smoke.top_k
    ha = build_ha_query(
        text, modal="text", n=k, hit=k, index=settings.vector_index, cluster=settings.cluster,
        formula=f"proxima_score({settings.vector_index})", sort=["+RANK"], config_extra=VENDOR_CONFIG,
    )
    result = query.search(ha)
    errors = ha_errors(result)
    if errors:
        raise SmokeQueryError(f"text query {text!r} answered errors: {errors}")
    hits = ha_hits(result)
    if len(hits) < settings.smoke.text_min_hits:
        raise SmokeQueryError(f"text query {text!r} found {len(hits)} hits, fewer than {settings.smoke.text_min_hits}")
    return {
        "kind": "text",
        "text": text,
        "top": [{"id": _primary_key(h, settings), "score": h.score} for h in hits],
    }


def _primary_key(hit: SearchHit, settings: OpenSearchConfig) -> Any:
    """The hit's primary key, from its summary fields; a hit without it cannot be told apart."""
    if settings.primary_key not in hit.fields:
        raise SmokeQueryError(
            f"a hit carries no {settings.primary_key!r} among its summary fields {sorted(hit.fields)}: set "
            "opensearch.primary_key to the table's primary key field, or add that field to the table's summary"
        )
    return _as_int(hit.fields[settings.primary_key])


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value
