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
from pipeline.errors import SmokeQueryError, SourceError
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
    object_etag: Callable[[str], str] | None = None,
    rows_by_id: Callable[[list[int]], list[dict]] | None = None,
) -> dict[str, Any]:
    """Search with the image of ``row``; its id must be among the top ``settings.smoke.top_k`` hits, or
    (given ``object_etag`` and ``rows_by_id``, the partition's rows for hit ids) an object with the same
    bytes (ETag) must be: identical images score alike, and enough copies push the sampled id out."""
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
        "match": "id" if row["id"] in ids else None,
        "top": top,
        "seconds": round(seconds, 3),
    }
    if outcome["rank"] is None and object_etag is not None and rows_by_id is not None:
        duplicate = _same_bytes_hit(key, ids, object_etag, rows_by_id)
        if duplicate is not None:
            rank, hit = duplicate
            outcome.update(rank=rank, match="same_bytes", matched_id=hit["id"], matched_image=hit["source_image"])
            log.info("image query with id %s: its own id is not in the top %d, but %s (rank %d) has the same bytes",
                     row["id"], k, hit["source_image"], rank)
    if outcome["rank"] is None:
        raise SmokeQueryError(
            f"image query with id {row['id']} ({row['source_image']}) did not find that id, nor an object with the same "
            f"bytes, in the top {k}: got {ids}. The new index may be missing rows, or be another table's"
        )
    return outcome


def _same_bytes_hit(
    key: str, ids: list[Any], object_etag: Callable[[str], str], rows_by_id: Callable[[list[int]], list[dict]]
) -> tuple[int, dict] | None:
    """(rank, row) of the best hit whose object has the sampled object's ETag, if any."""
    hit_rows = {r["id"]: r for r in rows_by_id([i for i in ids if isinstance(i, int)])}
    wanted = object_etag(key)
    for rank, hit_id in enumerate(ids, start=1):
        hit = hit_rows.get(hit_id)
        if hit is None:  # not in this partition: not a document of the new index
            continue
        try:
            etag = object_etag(hit["source_image"].lstrip("/"))
        except SourceError as exc:  # gone since the build, say: not a match
            log.warning("smoke query: cannot read the ETag of %s: %s", hit["source_image"], exc)
            continue
        if etag == wanted:
            return rank, hit
    return None


def prove_new_generation(results: list[dict[str, Any]], new_against: str | None) -> None:
    """When the samples are ids new against the live partition ``new_against``, one of them must have come
    back by its own id: a same-bytes hit may be an old document, which the old index answers as well."""
    images = [r for r in results if r.get("kind") == "image"]
    if new_against and images and not any(r.get("match") == "id" for r in images):
        matched = ", ".join(f"{r['id']} via {r.get('matched_id')}" for r in images)
        raise SmokeQueryError(
            f"every sampled id new against ds={new_against} came back only through an object with the same bytes "
            f"({matched}): such a document may be an old one, so nothing proves the new index is live. Raise "
            "opensearch.smoke.samples (more images), or check the index with a query of your own"
        )


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
