"""A local stand-in for Alibaba Cloud OSS that speaks the real wire protocol over a folder.

Why: no machine in development or CI reaches the cloud, yet the pipeline must be exercised through the
real ``oss2`` client (its signing, URL quoting, XML parsing and error mapping are part of what we test).
This module serves a local folder over HTTP exactly the way OSS answers ``oss2``, using the standard
library only.

Operations (path-style URLs ``http://127.0.0.1:PORT/bucket/key``, which oss2 uses for IP endpoints)
    ListObjects v1 and v2 (prefix, delimiter, marker / continuation-token / start-after, max-keys 1-1000,
    encoding-type=url, fetch-owner), GetObject (with a single Range, OSS semantics, see below),
    HeadObject, GetObjectMeta (``HEAD ?objectMeta``), PutObject (atomic, with ``x-oss-storage-class``),
    DeleteObject (idempotent), RestoreObject, PutBucket (creates the folder), CopyObject (up to 1 GB,
    :mod:`localcloud.oss.writes`), InitiateMultipartUpload, UploadPart, UploadPartCopy (any source
    size), CompleteMultipartUpload, AbortMultipartUpload (:mod:`localcloud.oss.multipart`; parts on
    disk under ``<root>/.oss-multipart/``), Put/Get/List/DeleteBucketInventory
    (:mod:`localcloud.oss.inventory_config`). Everything else answers ``NotImplemented`` or
    ``MethodNotAllowed``. :meth:`LocalOssServer.run_inventory` writes an inventory on demand
    (:mod:`localcloud.oss.inventory`). ETags are the content MD5 (:mod:`localcloud.oss.store`).

Storage classes
    Every object has one (Standard unless PutObject said otherwise); Archive, ColdArchive and
    DeepColdArchive objects answer GetObject with 403 ``InvalidObjectState`` until restored. See
    :mod:`localcloud.oss.archive`.

Range and Authentication
    OSS Range semantics (not RFC 7233's) are described in :mod:`localcloud.oss.protocol`; the
    accepted signatures (V4 with the bucket's region; V1 only with ``accept_v1``; STS tokens verified
    against the account's authority, expired ones refused) in :mod:`localcloud.oss.auth`.

Realism knobs (benchmarks)
    ``latency_s`` delays every answer; ``jitter_s`` adds a uniform random ``[0, jitter_s]`` to it, drawn
    from a generator seeded with ``seed``. A :class:`~localcloud.oss.generated.GeneratedBucket`
    serves millions of computed keys read-only, with no file per key (see
    :mod:`localcloud.oss.generated`); PutObject and DeleteObject on it answer ``AccessDenied``.

Fault knobs (reliability tests)
    ``faults`` (:class:`~localcloud.oss.faults.OssFaults`, also ``server.faults`` at runtime and the
    ``--fault-*`` CLI flags): 503 SlowDown bursts, connections reset mid-response, slow ListObjects
    pages, a page that fails once, short or empty pages that are still truncated (as OSS may answer
    them). See :mod:`localcloud.oss.faults`.

Safety
    The server binds to a loopback address only. Bucket names are checked against the OSS rules; keys
    with empty, ``.`` or ``..`` segments, NUL, backslashes, a leading ``/``, reserved names, or more than
    1023 bytes are refused before touching the disk, and every path is additionally resolved with
    ``os.path.realpath`` and must stay inside the bucket folder, which must itself stay inside the root.

Module layout
    :mod:`localcloud.oss.server` (this module) starts and stops the HTTP server and holds its
    configuration; :mod:`localcloud.oss.handler` answers one request (dispatch, authentication, object
    operations); folder buckets (keys on disk, listing, ETags) are :mod:`localcloud.oss.store`; the wire
    format (errors, listing XML, Range) :mod:`localcloud.oss.protocol`; signature checks
    :mod:`localcloud.oss.auth`; generated buckets :mod:`localcloud.oss.generated`; storage classes and
    restores :mod:`localcloud.oss.archive`; fault knobs :mod:`localcloud.oss.faults`; the command line
    ``python -m localcloud.oss``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import threading
from datetime import datetime
from types import TracebackType
from typing import Mapping, Sequence

from localcloud.http_service import BoundedHttpServer, Limits
from localcloud.oss.archive import DEFAULT_RESTORE_DELAY_S
from localcloud.oss.auth import AuthPolicy
from localcloud.oss.faults import OssFaults
from localcloud.oss.generated import GeneratedBucket
from localcloud.oss.handler import OssRequestHandler
from localcloud.oss.inventory import DEFAULT_ROWS_PER_FILE, run_inventory
from localcloud.oss.inventory_config import InventoryRules
from localcloud.oss.store import DIR_MARKER_NAME, TEMP_PREFIX, Credential
from localcloud.ram import TokenAuthority

__all__ = ["DIR_MARKER_NAME", "TEMP_PREFIX", "Credential", "GeneratedBucket", "LocalOssServer", "OssFaults"]

logger = logging.getLogger(__name__)


#: What the server accepts before a handler runs (see :mod:`localcloud.http_service`). OSS documents a
#: 5 GiB PutObject limit (400 EntityTooLarge above it, answered before the body is read) and 8 KB of
#: user metadata (x-oss-meta-*); it does not document its request-line or total header limits, nor
#: what it answers when they are exceeded: 16 KiB lines (a 1023-byte key percent-encoded, a pre-signed
#: URL with an STS token) and 64 KiB of headers are our choice, answered 414 / 431 in OSS's XML.
#: 128 workers: the benchmarks list with up to 64 concurrent requests.
OSS_LIMITS = Limits(max_workers=128, max_request_line=16 * 1024, max_header_bytes=64 * 1024,
                    max_body=5 * 1024**3)


class OssHttpServer(BoundedHttpServer):
    """The bounded HTTP server carrying the OSS configuration."""

    def __init__(
        self,
        address: tuple[str, int],
        root: str,
        auth: AuthPolicy,
        latency_s: float,
        jitter_s: float = 0.0,
        seed: int | None = None,
        generated: Mapping[str, GeneratedBucket] | None = None,
        faults: OssFaults | None = None,
        restore_delay_s: float = DEFAULT_RESTORE_DELAY_S,
        limits: Limits = OSS_LIMITS,
        account_id: str | None = None,
    ) -> None:
        self.root = root
        self.account_id = account_id
        self.inventory_rules = InventoryRules(root)
        self.restore_delay_s = restore_delay_s
        self.faults = faults if faults is not None else OssFaults()
        self.auth = auth
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.generated = dict(generated or {})
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        super().__init__(address, OssRequestHandler, limits)

    def delay_s(self) -> float:
        """This request's latency: ``latency_s`` plus uniform jitter in ``[0, jitter_s]`` (seeded)."""
        if self.jitter_s <= 0:
            return self.latency_s
        with self._rng_lock:
            return self.latency_s + self._rng.uniform(0.0, self.jitter_s)



class LocalOssServer:
    """An OSS-protocol HTTP server over ``root`` (bucket = sub-folder), for tests and local runs.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. The port is chosen when the server
    starts (``port=0`` picks a free one); read it from :attr:`endpoint`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        credentials: Sequence[Credential],
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        *,
        jitter_s: float = 0.0,
        seed: int | None = None,
        generated: Sequence[GeneratedBucket] = (),
        faults: OssFaults | None = None,
        region: str = "cn-hangzhou",
        accept_v1: bool = False,
        authority: TokenAuthority | None = None,
        restore_delay_s: float = DEFAULT_RESTORE_DELAY_S,
        limits: Limits = OSS_LIMITS,
        account_id: str | None = None,
    ) -> None:
        """Check the configuration now, so a bad root or key set fails before anything listens.

        ``latency_s`` is slept before each request is answered (to rehearse slow networks), plus a
        uniform random ``[0, jitter_s]`` drawn from a generator seeded with ``seed`` (None: unseeded).
        ``generated`` buckets are served read-only next to the folder buckets under ``root``, and take
        precedence over a folder of the same name. ``region``: the buckets' region, which V4 signatures
        must name. ``accept_v1``: also accept V1 signatures (an old bucket); refused by default, as by a
        new bucket. ``authority``: the STS whose temporary credentials are accepted (none by default).
        ``restore_delay_s``: how long a RestoreObject takes before the object is readable (see
        :mod:`localcloud.oss.archive`). ``limits``: the HTTP limits (workers, timeouts, header and body
        caps; :data:`OSS_LIMITS` by default). ``account_id``: the buckets' owner; when set, inventory rules
        must name it in AccountId and RoleArn (any numeric id is accepted when None).
        """
        real_root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real_root):
            raise FileNotFoundError(f"OSS root folder does not exist: {root}")
        if not credentials:
            raise ValueError("at least one Credential is required: the server refuses unsigned requests")
        secrets_by_id: dict[str, str] = {}
        for cred in credentials:
            if not cred.access_key_id or not cred.access_key_secret:
                raise ValueError("credentials need a non-empty access key id and secret")
            known = secrets_by_id.setdefault(cred.access_key_id, cred.access_key_secret)
            if known != cred.access_key_secret:
                raise ValueError(f"access key id {cred.access_key_id!r} is configured twice with different secrets")
        if host == "localhost":
            host = "127.0.0.1"
        try:
            loopback = ipaddress.IPv4Address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the local OSS server binds to IPv4 loopback addresses only, not {host!r}")
        if latency_s < 0 or jitter_s < 0 or restore_delay_s < 0:
            raise ValueError("latency_s, jitter_s and restore_delay_s must be >= 0")
        by_name = {bucket.name: bucket for bucket in generated}
        if len(by_name) != len(generated):
            raise ValueError("generated buckets need distinct names")
        self._root = real_root
        self._auth = AuthPolicy(secrets_by_id, authority=authority, region=region, accept_v1=accept_v1)
        self._host = host
        self._port = port
        self._latency_s = float(latency_s)
        self._jitter_s = float(jitter_s)
        self._seed = seed
        self._generated = by_name
        self._faults = faults if faults is not None else OssFaults()
        self._restore_delay_s = float(restore_delay_s)
        self._limits = limits
        self._account_id = account_id
        self._httpd: OssHttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "LocalOssServer":
        """Bind and serve in a daemon thread, so tests can talk to it from the calling thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._httpd = OssHttpServer(
            (self._host, self._port),
            self._root,
            self._auth,
            self._latency_s,
            jitter_s=self._jitter_s,
            seed=self._seed,
            generated=self._generated,
            faults=self._faults,
            restore_delay_s=self._restore_delay_s,
            limits=self._limits,
            account_id=self._account_id,
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-oss-server", daemon=True
        )
        self._thread.start()
        logger.debug("local OSS server serving %s at %s", self._root, self.endpoint)
        return self

    def stop(self) -> None:
        """Stop serving, cut kept-alive connections and release the port; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: pass it to ``oss2.Bucket`` (an IP endpoint means path-style URLs)."""
        if self._httpd is None:
            raise RuntimeError("server not started: the port is chosen at start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def root(self) -> str:
        """The resolved root folder (buckets are its sub-folders)."""
        return self._root

    def run_inventory(
        self,
        source_bucket: str,
        inventory_id: str,
        at: datetime | None = None,
        *,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        fault: str | None = None,
    ) -> str:
        """Write the inventory of ``source_bucket`` by its rule ``inventory_id`` now; returns the manifest key.

        See :func:`localcloud.oss.inventory.run_inventory` (layout, format, ``rows_per_file``, ``fault``);
        works whether or not the server is started.
        """
        run = run_inventory(self._root, self._generated, InventoryRules(self._root), source_bucket, inventory_id, at,
                            rows_per_file=rows_per_file, fault=fault)
        return run.manifest_key

    @property
    def faults(self) -> OssFaults:
        """The fault knobs (see :mod:`localcloud.oss.faults`); change them while the server runs."""
        return self._faults

    @property
    def restore_delay_s(self) -> float:
        """How long a RestoreObject takes; tests may change it while the server runs."""
        return self._restore_delay_s

    @restore_delay_s.setter
    def restore_delay_s(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("restore_delay_s must be >= 0")
        self._restore_delay_s = float(seconds)
        if self._httpd is not None:
            self._httpd.restore_delay_s = self._restore_delay_s

    def __enter__(self) -> "LocalOssServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
