"""``/docs`` (Swagger UI) and ``/redoc`` work without a network: their pages name only this
server's URLs, and those answer with the files (from the fastapi-offline package) and the
right content types. The browser test (test_page_browser.py) renders them with every outside
request blocked."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from tests.service.conftest import assert_problem

# src="..." / href="..." attributes and url: '...' / spec-url="..." in the pages' inline script
URL = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl\s*:\s*['"]([^'"]+)['"]""")
EXPECTED_TYPE = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".svg": ("image/svg+xml",),
    ".json": ("application/json",),
}


def _urls(html: str) -> list[str]:
    return [a or b for a, b in URL.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_local_assets(client, page):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = _urls(html)
    assert urls, html
    assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    assert "default-src 'self'" in response.headers["content-security-policy"]  # nothing else, even by script
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from elsewhere"
        asset = client.get(urljoin(page, url))
        assert asset.status_code == 200, (url, asset.status_code)
        suffix = "." + parts.path.rsplit(".", 1)[-1] if "." in parts.path.rsplit("/", 1)[-1] else ".json"
        ctype = asset.headers["content-type"].split(";")[0]
        assert ctype in EXPECTED_TYPE[suffix], (url, ctype)
        assert len(asset.content) > 100, url
    assert "/openapi.json" in urls


def test_the_assets_are_the_real_bundles(client):
    html = client.get("/docs").text
    (js,) = [u for u in _urls(html) if u.endswith(".js")]
    assert b"SwaggerUIBundle" in client.get(js).content
    (redoc,) = [u for u in _urls(client.get("/redoc").text) if u.endswith(".js")]
    assert b"Redoc" in client.get(redoc).content[:2000]
    assert "validatorUrl" in html and '"validatorUrl": null' in html  # no badge fetched from swagger.io


def test_oauth2_redirect_and_unknown_assets(client):
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert_problem(client.get("/docs-assets/nothing.js"), 404, "http.not_found")
    assert client.get("/openapi.json").json()["info"]["title"] == "clapsearch"


def test_docs_stay_open_when_keys_are_required(open_client):
    """Like /openapi.json, the docs are public: they describe the API, they do not use it."""
    keyed = open_client(api_keys=["k1"])
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/docs-assets/swagger-ui.css").status_code == 200
    assert_problem(keyed.get("/v1/collections"), 401, "auth.required")
