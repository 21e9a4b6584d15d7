"""The pipeline's errors: what happened, and what the operator should do about it.

    PipelineError                  base of everything we raise on purpose
    ├── ConfigError                an index config file is invalid (names file, field, value)
    ├── ConnectionConfigError      an Airflow connection is missing or malformed (names the conn id)
    ├── ParamError                 a run's Params (trigger conf) are refused: fix them and trigger again
    ├── CredentialsError           the credential provider was refused (role, trust policy, token file)
    │   └── TransientCredentialsError  STS or the metadata service unreachable or failing: retry
    ├── SourceError                listing OSS failed
    │   ├── SourceAccessError      credentials refused, bucket missing: fix config, do not retry
    │   ├── ArchivedObjectError    an object in an archive storage class is not restored: restore it
    │   └── TransientSourceError   5xx, throttling, reset connection: safe to retry the page
    ├── WarehouseError             writing or reading the catalog table failed
    │   ├── SchemaMismatchError    the existing table does not have the catalog schema
    │   └── TransientWarehouseError  5xx, throttling, network: the whole call may be repeated
    ├── InventoryError             an OSS Bucket Inventory run cannot be used (its format, its schema, the
    │   │                          staging folder): fix the rule or the config, or set fallback: list
    │   ├── InventoryStaleError    no complete run at most max_age_hours old (none, or the newest too old)
    │   └── InventoryIncompleteError  the chosen run disagrees with its manifest: checksum, a file missing,
    │                              of another size or MD5; names the file
    ├── CatalogError               a catalog rule refused an object (e.g. unmapped category, policy=fail)
    ├── PartitionCheckError        the written partition fails a check (no rows, duplicate ids)
    ├── ApprovalRejectedError      guards refused the partition and nobody approved it (rejected, timed
    │                              out, or no approval recorded): nothing was published
    ├── OpenSearchError            the OpenSearch management or query API failed
    │   ├── OpenSearchAccessError  credentials refused, instance or table unknown: fix config
    │   └── TransientOpenSearchError  5xx, throttling (``retry_after_s``), unreachable
    │       └── ReindexNotStartedError   a reindex that certainly started nothing (refused connection,
    │                                    throttled): the one reindex failure that may be repeated
    ├── RebuildError               a full rebuild did not make a new index live
    │   ├── PreflightError         instance, table or pause policy forbids starting one
    │   ├── RebuildFailedError     the new generation ended ``failed`` or ``stopped``
    │   ├── RebuildStalledError    no progress for too long (names the fsmId and the remedy)
    │   │   └── RebuildNotSwitchedError  built (``ready``) but never switched in: the old index serves
    │   ├── RebuildDeadlineError   the absolute deadline passed
    │   ├── RebuildIncompleteError live, but lacking more of the partition's rows than
    │   │                          guards.max_unindexed_fraction allows (already serving: see the message)
    │   └── ReplayWindowError      a full rebuild would have to replay pushes older than the service keeps
    ├── DeltaError                 pushing the changes (rebuild.mode delta/auto) failed
    │   └── DeltaNotAppliedError   pushes were answered OK but, within the bound, not every pushed id
    │                              answers or a deleted one still does (names the ids)
    └── SmokeQueryError            the live index did not answer a query as expected

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


class ParamError(PipelineError):
    """A run's Params are refused (a date in the future, a prefix outside the config's): the message names
    the Param, the value and what to pass instead. The same conf would fail again: trigger a new run."""


class CredentialsError(PipelineError):
    """The credential provider could not produce credentials and will not by trying again."""


class TransientCredentialsError(CredentialsError):
    """STS, the instance metadata service or a credentials URI failed in a way a retry may cure."""

    transient = True


class SourceError(PipelineError):
    """Listing objects in OSS failed."""


class SourceAccessError(SourceError):
    """OSS refused us (bad key, wrong secret, no such bucket): retrying will not help."""


class ArchivedObjectError(SourceError):
    """OSS refused to read an Archive / ColdArchive / DeepColdArchive object that is not restored
    (403 InvalidObjectState): retrying will not help until someone restores it."""


class ObjectTooLargeError(SourceError):
    """An object is larger than the caller allows (e.g. a thumbnail of an object over the index's
    ``max_size_bytes``): its body was never read."""


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


class InventoryError(PipelineError):
    """An OSS Bucket Inventory run cannot be used for the partition. The message names the run (its
    folder), the bucket and the rule, and says what to do (``python -m pipeline.oss.inventory show``,
    fix the rule with ``setup``, or ``fallback: list``). Terminal: the same inventory fails again."""


class InventoryStaleError(InventoryError):
    """No complete inventory run at or before the end of the partition's day is at most
    ``max_age_hours`` old: there is none, or the newest complete one is older (says how old)."""


class InventoryNotReadyError(InventoryStaleError):
    """The newest run is still being written (no manifest yet, started under a day ago) and no earlier
    run is fresh: OSS delivers within hours, so a later retry of the task may find it complete."""

    transient = True


class InventoryIncompleteError(InventoryError):
    """The chosen run disagrees with its manifest: manifest.checksum is not manifest.json's MD5, or a
    listed data file is missing, or has another size or MD5 (the message names the file)."""


class CatalogError(PipelineError):
    """A catalog rule refused an object and the configured policy is to fail the run."""


class PartitionCheckError(PipelineError):
    """The partition that was written is not fit to index (empty, duplicate ids, ...). ``refused`` holds
    the refusing guards as ``(name, message)`` pairs (empty when the check itself was misused, e.g. an
    unknown guard name), for the alerts to list them one by one."""

    def __init__(self, message: str, refused: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.refused = tuple(refused)


class ApprovalRejectedError(PipelineError):
    """With ``guards.on_refusal: ask``: the refused guards were rejected, the approval timed out (a
    rejection), or publishing found no approval recorded. Terminal: the answer stands; clear the approval
    task to ask again."""


class OpenSearchError(PipelineError):
    """The OpenSearch management or query API refused a call or failed."""


class OpenSearchAccessError(OpenSearchError):
    """Credentials refused, or the instance / table does not exist: retrying will not help."""


class TransientOpenSearchError(OpenSearchError):
    """5xx, throttling or an unreachable endpoint. ``retry_after_s`` is the server's hint, if any."""

    transient = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReindexNotStartedError(TransientOpenSearchError):
    """A reindex call that certainly started no build: the connection was refused or never made, or
    the service throttled it. Any other failure of a reindex may have started one."""


class RebuildError(PipelineError):
    """A full index rebuild did not make a new index live."""


class PreflightError(RebuildError):
    """The instance, the table or a pause policy forbids starting a rebuild now."""


class RebuildFailedError(RebuildError):
    """The new generation ended ``failed`` or ``stopped``."""


class RebuildStalledError(RebuildError):
    """The rebuild made no progress for longer than the configured stall timeout."""


class RebuildNotSwitchedError(RebuildStalledError):
    """The new generation was built (``ready``) but its change-history task never switched it in."""


class RebuildDeadlineError(RebuildError):
    """The absolute deadline for the rebuild passed before the new index went live."""


class RebuildIncompleteError(RebuildError):
    """The new generation went live lacking more of the partition's rows than ``max_unindexed_fraction``
    allows. It is already switched in: the message says so, with the numbers, examples and what to do."""


class ReplayWindowError(RebuildError):
    """A full rebuild from a partition captured longer ago than the service keeps pushed increments
    (3 days), while documents were pushed since then: the rebuild would silently drop them."""


class DeltaError(PipelineError):
    """Pushing the changed documents to the index failed for a reason no retry cures."""


class DeltaNotAppliedError(DeltaError):
    """The service answered every push OK (received), but within the bound not every pushed document
    answers by primary key, or a deleted one still does: pushes were lost or applied late."""


class SmokeQueryError(PipelineError):
    """The live index did not answer a smoke query as expected."""
