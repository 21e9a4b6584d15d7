"""The assets an index produces, as plain strings: their names and URIs (README: Assets).

Two per index: the catalog table (``image_index.<name>.catalog``, an event each time a partition is
published) and, with an ``opensearch`` section, the live OpenSearch table (``image_index.<name>.live``,
an event each time a partition is proven live by the smoke query). The partition is no part of a URI
(one asset a day would be a new asset a day): it travels in each event's extra.

The URIs are computed from the config alone, since a DAG file is parsed without network or database
access: the config's ``assets.warehouse_uri`` / ``assets.index_uri`` when set (e.g.
``maxcompute://<project>/<table>``, ``opensearch://<instance_id>/<table>``: names that do not depend on
Airflow connections), else ``warehouse://<warehouse.conn_id>/<warehouse.table>`` and
``opensearch://<opensearch.conn_id>/<opensearch.table>``, whose authority is the Airflow connection id
(URL-quoted: connection ids may hold ``/``, ``:`` or ``#``).

Airflow 3.3 accepts URIs of schemes no provider registers, unchanged but for normalisation (scheme
lower-cased, trailing ``/`` dropped, query sorted, fragment dropped); it refuses ``airflow://``. A URI here
must already be in that normal form, so what the config says is what consumers schedule on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from pipeline.config import IndexConfig

#: Airflow keeps URIs up to 1500 characters; a configured one stays well inside.
MAX_URI_CHARS = 1000
# scheme://authority/path, path segments non-empty (no '//', no trailing '/'), no user info, query or fragment.
_URI_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>[^/?#@]+)(?P<path>(?:/[^/?#]+)+)")
DEFAULT_WAREHOUSE_SCHEME = "warehouse"
DEFAULT_INDEX_SCHEME = "opensearch"


def check_asset_uri(value: str) -> str:
    """A URI an index's asset may have; raises ValueError naming the rule it breaks (the config's error
    message adds the value)."""
    if len(value) > MAX_URI_CHARS:
        raise ValueError(f"an asset URI has at most {MAX_URI_CHARS} characters")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("an asset URI is printable ASCII without spaces (percent-encode the rest)")
    match = _URI_RE.fullmatch(value)
    if not match:
        raise ValueError("an asset URI reads <scheme>://<authority>/<path>: lower-case scheme, no user, query or "
                         "fragment, no empty path segment or trailing '/'")
    if match["scheme"] == "airflow":
        raise ValueError("Airflow reserves the scheme 'airflow' for asset URIs")
    return value


@dataclass(frozen=True)
class AssetIds:
    """Name and URI of one asset."""

    name: str
    uri: str


@dataclass(frozen=True)
class IndexAssetIds:
    catalog: AssetIds
    live: AssetIds | None  # None without an opensearch section


def index_asset_ids(config: IndexConfig) -> IndexAssetIds:
    """The names and URIs of the assets ``config``'s DAG produces."""
    overrides = config.assets
    catalog = AssetIds(
        f"image_index.{config.name}.catalog",
        overrides.warehouse_uri
        or f"{DEFAULT_WAREHOUSE_SCHEME}://{quote(config.warehouse.conn_id, safe='')}/{config.warehouse.table}",
    )
    live = None
    if config.opensearch is not None:
        live = AssetIds(
            f"image_index.{config.name}.live",
            overrides.index_uri
            or f"{DEFAULT_INDEX_SCHEME}://{quote(config.opensearch.conn_id, safe='')}/{config.opensearch.table}",
        )
    return IndexAssetIds(catalog, live)
