"""The report page: a FastAPI app that Airflow's API server mounts at ``/image-index``.

Authentication and authorization are Airflow's own. Airflow does not authenticate a plugin's app (a
mounted app inherits none of the core API's dependencies), so every route here depends on
:func:`current_user`: the caller as the core API authenticates it (``get_user``: a ``Bearer`` token, else
the ``_token`` cookie the Airflow UI's login sets), validated by the configured auth manager. Each index
is then shown only to a user the auth manager lets read its DAG's runs (``is_authorized_dag``, GET,
``DagAccessEntity.RUN``): the same permission as the DAG's runs in the Airflow UI. A page request
without a valid login is sent to the auth manager's login page and comes back after it; the thumbnail
endpoint answers 401.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.airflow.plugin import images, pages, reports

log = logging.getLogger(__name__)

URL_PREFIX = "/image-index"
# No script at all, images only from here, nothing framing the page but Airflow's own UI.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def current_user(request: Request) -> Any:
    """The authenticated caller, or HTTP 401 (403 for a token that is not valid)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


class Access:
    """What the caller may see: an index's reports iff the auth manager lets them read its DAG's runs."""

    def __init__(self, user: Any) -> None:
        self.user = user

    def readable(self, dag_ids: list[str]) -> set[str]:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
        from airflow.configuration import conf

        teams: dict[str, str | None] = {}
        if conf.getboolean("core", "multi_team", fallback=False):
            from airflow.models.dag import DagModel

            teams = DagModel.get_dag_id_to_team_name_mapping(dag_ids)
        manager = get_auth_manager()
        return {
            dag_id for dag_id in dag_ids
            if manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                         details=DagDetails(id=dag_id, team_name=teams.get(dag_id)), user=self.user)
        }


def access(user: Any = Depends(current_user)) -> Access:
    return Access(user)


def _root(request: Request) -> str:
    """Where this app is mounted, with Airflow's base URL path (links are absolute paths under it)."""
    return request.scope.get("root_path", "").rstrip("/")


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


def _index(name: str, who: Access):
    """The config of index ``name``, if the caller may read its DAG: else 404 or 403."""
    config = reports.load_indexes().configs.get(name)
    if config is None:
        raise HTTPException(404, f"no index {name!r} is configured")
    if reports.dag_id_of(config) not in who.readable([reports.dag_id_of(config)]):
        raise HTTPException(403, f"you may not read the runs of DAG {reports.dag_id_of(config)!r}")
    return config


def create_app() -> FastAPI:
    app = FastAPI(title="Image index reports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _login_first(request: Request, exc: StarletteHTTPException) -> Response:
        """A page asked for without a login goes to the login page and back; the rest is plain."""
        if exc.status_code == 401 and request.method == "GET" and not request.url.path.endswith("/thumbnail"):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain",
                        headers={**(exc.headers or {}), **SECURITY_HEADERS})

    @app.get("/", response_class=HTMLResponse)
    def index_list(request: Request, who: Access = Depends(access)) -> HTMLResponse:
        loaded = reports.load_indexes()
        dag_ids = {name: reports.dag_id_of(config) for name, config in loaded.configs.items()}
        allowed = who.readable(sorted(dag_ids.values()))
        rows = []
        for name, config in loaded.configs.items():
            if dag_ids[name] not in allowed:
                continue
            entries = reports.runs(name)
            rows.append({"name": name, "description": config.description, "dag_id": dag_ids[name],
                         "runs": len(entries), "latest": entries[0] if entries else None})
        return _html(pages.index_list_page(_root(request), rows, loaded.error))

    @app.get("/indexes/{name}", response_class=HTMLResponse)
    def index_runs(request: Request, name: str, who: Access = Depends(access)) -> HTMLResponse:
        config = _index(name, who)
        entries = reports.runs(name)
        points = reports.series(name, entries)
        return _html(pages.index_page(_root(request), config, reports.dag_id_of(config), entries, points, reports.MAX_RUNS))

    @app.get("/indexes/{name}/run", response_class=HTMLResponse)
    def run(request: Request, name: str, report: str = Query(max_length=1000), who: Access = Depends(access)) -> HTMLResponse:
        config = _index(name, who)
        found = reports.read_report(name, report)
        if found is None:
            raise HTTPException(404, f"index {name!r} has no report {report!r} (runs.jsonl names its reports)")
        try:
            resolved = images.resolve_hits(config, found)
        except Exception as exc:
            resolved = images.Resolved(images.report_images(found) if isinstance(found.get("smoke_queries"), list) else {},
                                       f"the hits could not be looked up: {type(exc).__name__}: {exc}")
        root = _root(request)

        def image_url(path: Any) -> str | None:
            try:
                key = images.image_key(config, path)
            except images.KeyRefused:
                return None
            query = urlencode({"key": key, "sig": images.sign(name, key)})
            return f"{pages.index_href(root, name)}/thumbnail?{query}"

        try:
            return _html(pages.run_page(root, config, found, resolved.images, image_url, resolved.note))
        except Exception as exc:  # a report edited by hand, or of another shape: say so, not a bare 500
            log.warning("report page: cannot show report %s of %s: %s", report, name, exc)
            raise HTTPException(500, f"report {report!r} of index {name!r} cannot be shown: {type(exc).__name__}: {exc}") from None

    @app.get("/indexes/{name}/thumbnail")
    def thumbnail(request: Request, name: str, key: str = Query(max_length=2048), sig: str = Query(max_length=64),
                  who: Access = Depends(access)) -> Response:
        config = _index(name, who)
        if not images.signed(name, key, sig):
            raise HTTPException(403, "not an image this index's report pages show")
        try:
            key = images.image_key(config, key)
        except images.KeyRefused as exc:
            raise HTTPException(400, f"refused: {exc}") from None
        try:
            thumb = images.thumbnail(config, key)
        except images.ImageUnavailable as exc:
            raise HTTPException(exc.status, str(exc)) from None
        headers = {**SECURITY_HEADERS, "Cache-Control": f"private, max-age={images.CACHE_SECONDS}", "ETag": thumb.etag}
        if request.headers.get("if-none-match") == thumb.etag:
            return Response(status_code=304, headers=headers)
        return Response(thumb.data, media_type=thumb.media_type, headers=headers)

    return app
