"""The pipeline's errors: what happened, and what the operator should do about it.

    PipelineError                  base of everything we raise on purpose
    ├── ConfigError                an index config file is invalid (names file, field, value)
    ├── ConnectionConfigError      an Airflow connection is missing or malformed (names the conn id)
    ├── SourceError                listing OSS failed
    │   ├── SourceAccessError      credentials refused, bucket missing: fix config, do not retry
    │   └── TransientSourceError   5xx, throttling, reset connection: safe to retry the page
    ├── WarehouseError             writing or reading the catalog table failed
    │   ├── SchemaMismatchError    the existing table does not have the catalog schema
    │   └── TransientWarehouseError  5xx, throttling, network: the whole call may be repeated
    ├── CatalogError               a catalog rule refused an object (e.g. unmapped category, policy=fail)
    └── PartitionCheckError        the written partition fails a check (no rows, duplicate ids)

``transient`` marks errors that a bounded retry may cure; everything else is terminal.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class. ``transient`` tells the retry policy whether repeating can help."""

    transient: bool = False


class ConfigError(PipelineError):
    """An index config is invalid. The message names the file, the field and the bad value."""


class ConnectionConfigError(PipelineError):
    """An Airflow connection is missing or lacks a field we need."""


class SourceError(PipelineError):
    """Listing objects in OSS failed."""


class SourceAccessError(SourceError):
    """OSS refused us (bad key, wrong secret, no such bucket): retrying will not help."""


class TransientSourceError(SourceError):
    """A failure that a retry of the same page may cure (5xx, throttling, connection reset)."""

    transient = True


class WarehouseError(PipelineError):
    """Writing or reading the catalog table failed."""


class TransientWarehouseError(WarehouseError):
    """The warehouse service failed in a way a later retry of the same call may cure."""

    transient = True


class SchemaMismatchError(WarehouseError):
    """The table exists with a schema other than the catalog's; we never alter it for you."""


class CatalogError(PipelineError):
    """A catalog rule refused an object and the configured policy is to fail the run."""


class PartitionCheckError(PipelineError):
    """The partition that was written is not fit to index (empty, duplicate ids, ...)."""
