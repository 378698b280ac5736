"""``/docs`` (Swagger UI) and ``/redoc`` in a real browser (Debian's chromium, driven by
Playwright, as test_page_browser.py) with every request that leaves the app refused: they render
the operations from the assets the app serves itself.

Skips when chromium or the playwright package is missing, unless CLAPSEARCH_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import unavailable
from tests.service.browser import CHROMIUM, CHROMIUM_ARGS, serve
from tests.service.conftest import MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory, sync_api):
    """The app under uvicorn over an empty home (the docs need no library): {"url"}."""
    if not (MODEL / "manifest.json").is_file():
        unavailable(f"the shipped model is missing: {MODEL}")
    base = tmp_path_factory.mktemp("docs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(CLAPSEARCH_HOME=str(base / "home"), CLAPSEARCH_MODEL=str(MODEL), PYTHONUNBUFFERED="1")
    with serve(env, base / "uvicorn.log") as url:
        yield {"url": url}


@pytest.fixture()
def page(sync_api):
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            pg = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
            pg.set_default_timeout(30_000)
            pg.console_errors = []
            pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(f"console: {m.text}"))
            pg.on("pageerror", lambda e: pg.console_errors.append(f"pageerror: {e}"))
            yield pg
        finally:
            chromium.close()


def test_api_docs_render_offline(page, site, sync_api):
    """/docs (Swagger UI) and /redoc render the operations with every request that leaves this
    server refused: their scripts, styles and fonts come from the app itself."""
    expect = sync_api.expect
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(site["url"]):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(site["url"] + "/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() >= 15
    expect(page.locator(".opblock-summary-path", has_text="/v1/classify").first).to_be_visible()
    page.locator(".opblock-post", has_text="/v1/classify").first.locator(".opblock-summary").click()
    expect(page.get_by_text("multipart/form-data").first).to_be_attached()

    page.goto(site["url"] + "/redoc")
    expect(page.get_by_role("heading", name="Zero-shot tagging").first).to_be_visible(timeout=60_000)
    assert page.get_by_role("heading", level=2).count() >= 15  # one per operation
    assert not outside, f"the docs asked outside this server for {outside}"
    # ReDoc's sidebar tries its vendor's logo; the pages' Content-Security-Policy refuses it
    # before any request is made (the browser says so on the console), and nothing else is refused
    errors = [e for e in page.console_errors if "cdn.redoc.ly/redoc/logo-mini.svg" not in e]
    assert not errors, "console errors:\n" + "\n".join(errors)
