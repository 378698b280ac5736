"""A lean path for the hot query: ``GET /v1/search?q=...`` (and ``/search``) with nothing but
``q``, ``limit``, ``offset``, ``collection``, ``mode`` and ``output=json``.

FastAPI resolves the text search's 17 query parameters one by one (a pydantic check each), then
its dependencies, through two route matchings of the included router: about 0.8 ms of Python per
request on this 2-core VM (more under load), as much as the whole rest of the service's work
around a 4-6 ms embedding (bench/RESULTS.md, "Service overhead"). This route sits first in the
app's routes and answers only requests whose parameters it can check completely: each at most
once, from that list, in their plain form (digits for numbers, a known mode). It then runs the
same steps as the FastAPI route: the access guard, ``SearchOptions`` and ``search_options``,
``text_search``; errors propagate to the same exception handlers. Every other request (filters,
exports, a repeated or odd parameter, HEAD, POST) does not match here and takes the FastAPI
route, which also documents the endpoint in OpenAPI: this route is not in the schema.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from starlette.datastructures import QueryParams, URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound, get_route_path
from starlette.types import Receive, Scope, Send

from service.routes.params import search_options
from service.routes.search import text_search
from service.schemas import SearchOptions

PATHS = ("/v1/search", "/search")
# what pydantic reads as the same int and the route accepts (limit >= 1, offset >= 0); "+1", "01", " 1" go the long way
_NUMBER = {"limit": re.compile(r"[1-9][0-9]{0,8}"), "offset": re.compile(r"0|[1-9][0-9]{0,8}")}
_MODES = frozenset(("hybrid", "audio", "text"))
_SIMPLE = frozenset(("q", "limit", "offset", "collection", "mode", "output"))


def simple_query(query_string: bytes) -> dict[str, str] | None:
    """The parameters of a plain text search, or None when FastAPI's route should judge them."""
    if not query_string:
        return None
    items = QueryParams(query_string).multi_items()  # decoded exactly as the FastAPI route sees them
    params = dict(items)
    if len(params) != len(items) or "q" not in params or not params.keys() <= _SIMPLE:
        return None
    if any(name in params and not number.fullmatch(params[name]) for name, number in _NUMBER.items()):
        return None
    if params.get("mode", "hybrid") not in _MODES or params.get("output", "json") != "json":
        return None
    if len(params.get("collection", "")) > 200:  # the Query's max_length: its 422 comes from FastAPI
        return None
    return params


class HotTextSearch(BaseRoute):
    """``GET path`` for the parameters :func:`simple_query` accepts; see the module."""

    def __init__(self, path: str):
        self.path = path  # also the route template the request metrics are labelled with

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET" or get_route_path(scope) != self.path:
            return Match.NONE, {}
        params = simple_query(scope.get("query_string", b""))
        if params is None:
            return Match.NONE, {}
        return Match.FULL, {"route": self, "hot_search": params}

    def url_path_for(self, name: str, /, **path_params) -> URLPath:
        raise NoMatchFound(name, path_params)  # url_for names the FastAPI route, which it shadows

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        request.app.state.guard(request)  # what require_access does for every protected route
        params = scope["hot_search"]
        options = SearchOptions(  # valid by construction: simple_query let only these forms through
            collection=params.get("collection"),
            limit=int(params.get("limit", 10)),
            offset=int(params.get("offset", 0)),
            mode=params.get("mode", "hybrid"),
        )
        response = await text_search(request.app.state.runtime, params["q"], search_options(request, options))
        await response(scope, receive, send)


def add_hot_routes(app: FastAPI) -> None:
    """Put the lean text search in front of the app's routes (after they are all included)."""
    for path in reversed(PATHS):
        app.router.routes.insert(0, HotTextSearch(path))
