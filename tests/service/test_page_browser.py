"""The web page in a real browser (Debian's chromium, driven by Playwright) against the real app.

A small tone library is ingested with the shipped default model, the app runs under uvicorn in a
subprocess, and the test does what a user does: search, look at waveforms, play, seek, "similar",
search with a clip, tag, ingest a second folder, upload a broken file. It fails on any console
error or uncaught page exception. Further tests check the layout from 360 to 1920 px (no sideways
scrolling, every result button clickable at 400, 800 and 1400 px, results first on small screens),
copy path, download, drag-out, the keyboard, and run axe-core (vendored under vendor/) for
serious or critical accessibility violations.

Skips when chromium or the playwright package is missing, unless CLAPSEARCH_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_captured, unavailable
from tests.indexer.library import write
from tests.service.browser import CHROMIUM, CHROMIUM_ARGS, serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "clapsearch-sfx-v1"
MODEL_NAME = (
    json.loads((MODEL / "manifest.json").read_text()).get("name", "clapsearch-sfx-v1")
    if (MODEL / "manifest.json").is_file()
    else "clapsearch-sfx-v1"
)

# name, seconds, frequency
LIBRARY = [
    ("low_hum_110hz.wav", 3.0, 110.0),
    ("beep_440hz.wav", 1.5, 440.0),
    ("whistle_1760hz.flac", 2.0, 1760.0),
    ("tone_880hz.ogg", 2.5, 880.0),
    ("buzz_220hz.wav", 4.0, 220.0),
    ("long_drone_330hz.wav", 25.0, 330.0),
]
NEW_FILE = "fresh_chime_660hz.wav"
LONG_FILE = "long_drone_330hz.wav"


@pytest.fixture(scope="module")
def site(tmp_path_factory, sync_api):
    """Ingested library + running app: {"url", "root", "incoming", "home", "log", "dir"}."""
    if not (MODEL / "manifest.json").is_file():
        unavailable(f"the shipped model is missing: {MODEL}")
    base = tmp_path_factory.mktemp("page")
    home, root = base / "home", base / "allowed"
    library, incoming = root / "sfx", root / "incoming"
    for i, (name, seconds, freq) in enumerate(LIBRARY):
        write(library / name, seconds, sr=22_050, freq=freq, seed=i)
    write(incoming / NEW_FILE, 2.0, sr=22_050, freq=660.0, seed=42)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(
        CLAPSEARCH_HOME=str(home),
        CLAPSEARCH_MODEL=str(MODEL),
        CLAPSEARCH_ALLOWED_INGEST_ROOTS=str(root),
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-c", "from indexer.cli import main; main()", "ingest", str(library)]
    command += ["--home", str(home), "--model", str(MODEL), "--segments", "-q"]
    ingest = run_captured(command, cwd=REPO, env=env, timeout=600)
    assert ingest.returncode == 0, f"indexer ingest failed:\n{ingest.stdout}\n{ingest.stderr}"

    with serve(env, base / "uvicorn.log") as url:
        yield {"url": url, "root": root, "incoming": incoming, "home": home, "env": env, "dir": base}


@pytest.fixture()
def browser(sync_api):
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser):
    """A fresh page; ``page.console_errors`` collects console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1440, "height": 960}, color_scheme="light")
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.console_errors = []
    pg.on(
        "console",
        lambda m: m.type == "error" and pg.console_errors.append(f"console: {m.text} @ {m.location.get('url', '')}"),
    )
    pg.on("pageerror", lambda e: pg.console_errors.append(f"pageerror: {e}"))
    try:
        yield pg
    finally:
        context.close()


# ----------------------------------------------------------------------------------------- helpers

WAVES_DRAWN = """() => {
  const canvases = [...document.querySelectorAll('[data-testid=result-card] canvas[data-testid=waveform]')];
  if (!canvases.length) return false;
  return canvases.every((c) => {
    if (!c.width || !c.height) return false;
    // a row a quarter of the way down: only a drawn waveform reaches it (not the centre line)
    const row = c.getContext('2d').getImageData(0, Math.floor(c.height / 4), c.width, 1).data;
    let inked = 0;
    for (let i = 3; i < row.length; i += 4) if (row[i] > 0) inked++;
    return inked > c.width / 4;
  });
}"""


def _cards(page):
    return page.locator("[data-testid=result-card]")


def _names(page) -> list[str]:
    return page.locator("[data-testid=result-card] [data-testid=result-name]").all_inner_texts()


def _scores(page) -> list[float]:
    return [float(s) for s in page.locator("[data-testid=result-card] .score-num").all_inner_texts()]


def _wait_summary(page, expect, pattern: str):
    expect(page.locator("#results-summary .summary-main")).to_have_text(re.compile(pattern), timeout=30_000)
    expect(page.locator("#results-summary")).not_to_have_class(re.compile(r"\bbusy\b"))


# -------------------------------------------------------------------------------------------- test


def test_page_in_a_real_browser(page, site, sync_api, tmp_path):
    expect = sync_api.expect
    url = site["url"]
    page.goto(url + "/")
    expect(page.locator("#model-name")).to_have_text(MODEL_NAME)
    expect(page.locator("#f-collection option[value=default]")).to_have_text("default (6 files)")

    # "/" focuses the search box, Enter searches
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    # no word of this query is in a file name: hybrid ranks by sound alone, so scores descend
    page.keyboard.type("a steady electronic sound")
    page.keyboard.press("Enter")
    _wait_summary(page, expect, r"^6 results for “a steady electronic sound”")
    assert sorted(_names(page)) == sorted(n for n, _, _ in LIBRARY)
    scores = _scores(page)
    assert all(-1 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True), scores
    expect(page.locator("#took-ms")).to_have_text(re.compile(r"^\d+(\.\d)? ms"))
    assert "q=a+steady+electronic+sound" in page.url
    page.wait_for_function(WAVES_DRAWN, timeout=30_000)
    assert page.locator("[data-testid=result-card] .wave-note:not(:empty)").count() == 0

    # play: the <audio> element plays, and the card shows it
    first = _cards(page).first
    first.get_by_test_id("play").click()
    page.wait_for_function(
        "() => { const p = document.getElementById('player'); return !p.paused && p.currentTime > 0.15; }",
        timeout=20_000,
    )
    expect(first).to_have_class(re.compile(r"\bplaying\b"))
    expect(first.get_by_test_id("play")).to_have_attribute("aria-label", "Pause " + _names(page)[0])
    page.screenshot(path=str(tmp_path / "page-playing.png"))

    # clicking the waveform of the 25 s file seeks into it (HTTP Range), space toggles playback
    long_card = _cards(page).filter(has_text=LONG_FILE)
    long_id = long_card.get_attribute("data-id")
    box = long_card.get_by_test_id("waveform").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "(id) => { const p = document.getElementById('player');"
        " return p.getAttribute('src').includes('/v1/items/' + id + '/audio') && !p.paused"
        " && p.currentTime > 13 && p.currentTime < 18; }",
        arg=long_id,
        timeout=20_000,
    )
    expect(long_card).to_have_class(re.compile(r"\bplaying\b"))
    expect(first).not_to_have_class(re.compile(r"\bplaying\b"))
    long_card.focus()
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('player').paused")
    expect(long_card).not_to_have_class(re.compile(r"\bplaying\b"))
    page.keyboard.press(" ")
    page.wait_for_function("() => !document.getElementById('player').paused")
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('player').paused")

    # moments inside long files: segment hits shade their span
    page.locator("#f-segments").check()
    expect(page).to_have_url(re.compile(r"segments=true"))  # filters re-run the search
    _wait_summary(page, expect, r"results for “a steady electronic sound”")
    moments = _cards(page).filter(has_text=re.compile(r"moment \d"))
    assert moments.count() >= 1, _names(page)  # overlapping windows fold into distinct moments
    assert {moments.nth(i).get_attribute("data-id") for i in range(moments.count())} == {long_id}
    page.wait_for_function(WAVES_DRAWN, timeout=30_000)
    # the span is shaded over the whole height: the top pixel row is inked inside it only
    shading = moments.first.get_by_test_id("waveform").evaluate("""(c) => {
        const row = c.getContext('2d').getImageData(0, 0, c.width, 1).data;
        const inked = []; for (let i = 3; i < row.length; i += 4) if (row[i] > 0) inked.push((i - 3) / 4);
        return inked.length ? [inked[0] / c.width, inked[inked.length - 1] / c.width] : null; }""")
    text = moments.first.inner_text()
    start, end = (float(v) for v in re.search(r"moment (\d+\.\d+) s–(\d+\.\d+) s", text).groups())
    assert shading and abs(shading[0] - start / 25) < 0.02 and abs(shading[1] - end / 25) < 0.02, (shading, text)
    page.locator("#f-segments").uncheck()
    expect(page).not_to_have_url(re.compile(r"segments="))
    _wait_summary(page, expect, r"^6 results for")

    # "similar" on a card: new results, the item itself left out
    first = _cards(page).first
    first_id, first_name = first.get_attribute("data-id"), first.get_by_test_id("result-name").inner_text()
    first.get_by_test_id("similar").click()
    _wait_summary(page, expect, r"^5 results for sounds like “" + re.escape(first_name))
    assert first_name not in _names(page)
    assert f"similar={first_id}" in page.url
    page.wait_for_function(WAVES_DRAWN, timeout=30_000)

    # query by example through the file picker
    clip = write(tmp_path / "my_clip_300hz.wav", 2.0, sr=16_000, freq=300.0, seed=7)
    page.set_input_files("#file-input", str(clip))
    _wait_summary(page, expect, r"^6 results for sounds like your clip “my_clip_300hz.wav”")
    expect(page.locator("#classify-target")).to_have_text(re.compile("my_clip_300hz.wav"))
    expect(page.locator("#texts-results [data-testid=text-row]").first).to_be_visible()
    assert page.locator("#texts-results [data-testid=text-row]").count() == 8

    # tagging a result: three labels, softmax scores summing to ~1, raw cosines shown
    card = _cards(page).first
    card_name = card.get_by_test_id("result-name").inner_text()
    card.get_by_test_id("tag-this").click()
    expect(page.locator("#classify-target")).to_have_text(card_name)
    expect(page.locator("#labels-input")).to_be_focused()
    page.fill("#labels-input", "a tone, rain, dog")
    expect(page.locator("#template-input")).to_have_value("This is a sound of {}.")
    page.get_by_test_id("classify-button").click()
    rows = page.locator("#classify-results [data-testid=label-row]")
    expect(rows).to_have_count(3)
    labels = rows.locator(".bar-label").all_inner_texts()
    values = [float(v) for v in rows.locator(".bar-value").all_inner_texts()]
    assert sorted(labels) == ["a tone", "dog", "rain"]
    assert abs(sum(values) - 1) < 0.01 and values == sorted(values, reverse=True), values
    assert all(re.fullmatch(r"cos -?\d\.\d{3}", s) for s in rows.locator(".bar-sub").all_inner_texts())
    expect(page.locator("#texts-results [data-testid=text-row]").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    # ingest a second folder: progress until finished, then a search finds the new file
    page.fill("#ingest-path", str(site["incoming"]))
    page.get_by_test_id("ingest-button").click()
    expect(page.locator("#job-current")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("finished", timeout=180_000)
    assert page.eval_on_selector("#job-progress", "p => p.value === p.max")
    expect(page.locator("#job-counts")).to_contain_text("1 / 1 files")
    expect(page.locator("#job-counts")).to_contain_text("1 embedded")
    expect(page.locator("#job-counts")).to_contain_text("0 errors")
    expect(page.locator("#jobs-list [data-testid=job-row]").first).to_contain_text("finished")
    expect(page.locator("#f-collection option[value=default]")).to_have_text("default (7 files)")
    page.fill("#q", "a chime")
    page.press("#q", "Enter")
    _wait_summary(page, expect, r"^7 results for “a chime”")
    assert NEW_FILE in _names(page)
    page.wait_for_function(WAVES_DRAWN, timeout=30_000)

    # a broken upload: the problem's title is shown, and can be dismissed
    import httpx

    garbage = tmp_path / "broken.wav"
    garbage.write_bytes(np.random.default_rng(3).bytes(6000))
    direct = httpx.post(url + "/v1/search/audio", files={"file": ("broken.wav", garbage.read_bytes(), "audio/wav")})
    assert 400 <= direct.status_code < 500 and direct.headers["content-type"].startswith("application/problem+json")
    problem = direct.json()
    page.set_input_files("#file-input", str(garbage))
    message = page.locator("#messages [data-testid=error-message]")
    expect(message).to_be_visible()
    expect(message.locator(".message-title")).to_have_text(problem["title"])
    if problem.get("detail"):
        expect(message.locator(".message-detail")).to_contain_text(problem["detail"][:40])
    page.wait_for_timeout(300)  # the message's pop-in animation
    page.screenshot(path=str(tmp_path / "page-error.png"))
    message.get_by_test_id("dismiss-message").click()
    expect(message).to_have_count(0)

    # a shared link replays the search; "more results" pages through with offset, up to the total
    page.goto(url + "/?q=a+low+hum&limit=3")
    _wait_summary(page, expect, r"^3 of 7 results for “a low hum”")  # the answer's total
    expect(page.locator("#q")).to_have_value("a low hum")
    expect(page.locator("#f-limit")).to_have_value("3")
    first_page = _names(page)
    page.get_by_test_id("more-results").click()
    _wait_summary(page, expect, r"^6 of 7 results for “a low hum”")
    assert _names(page)[:3] == first_page
    page.get_by_test_id("more-results").click()
    _wait_summary(page, expect, r"^7 results for “a low hum”")
    expect(page.get_by_test_id("more-results")).to_be_hidden()
    assert len(set(_names(page))) == 7

    # dark mode renders too
    page.emulate_media(color_scheme="dark")
    page.wait_for_function(WAVES_DRAWN, timeout=30_000)
    page.screenshot(path=str(tmp_path / "page-dark.png"), full_page=True)
    print(f"\nscreenshots: {tmp_path}/page.png, page-playing.png, page-error.png, page-dark.png")

    expected = f"the server responded with a status of {direct.status_code}"
    unexpected = [e for e in page.console_errors if expected not in e]
    assert not unexpected, "console errors:\n" + "\n".join(unexpected)
    assert sum(expected in e for e in page.console_errors) <= 1, page.console_errors


def test_page_asks_for_an_api_key(page, site, sync_api):
    """With CLAPSEARCH_API_KEYS set, a 401 opens the key field; the saved key (localStorage) is
    sent as X-API-Key and traded for the media cookie (never put in a URL), and playback works."""
    expect = sync_api.expect
    env = {**site["env"], "CLAPSEARCH_API_KEYS": "s3cret-key,other"}
    with serve(env, site["dir"] / "uvicorn-keys.log") as url:
        page.goto(url + "/")
        message = page.locator("#messages [data-testid=error-message]")
        expect(message).to_have_count(1)  # one message for all the requests the key broke
        expect(message.locator(".message-title")).to_have_text("Authentication required")
        expect(page.locator("#apikey-panel")).to_be_visible()
        expect(page.locator("#apikey-input")).to_be_focused()

        page.fill("#apikey-input", "wrong")
        page.press("#apikey-input", "Enter")
        expect(message.locator(".message-title")).to_have_text("Invalid API key")
        expect(page.locator("#apikey-panel")).to_be_visible()

        page.fill("#apikey-input", "s3cret-key")
        page.click("#apikey-save")
        expect(page.locator("#apikey-panel")).to_be_hidden()
        expect(message).to_have_count(0)
        assert page.evaluate("localStorage.getItem('clapsearch.apiKey')") == "s3cret-key"

        page.reload()  # the key survives a reload
        page.fill("#q", "a buzz")
        page.press("#q", "Enter")
        _wait_summary(page, expect, r"^\d+ results for “a buzz”")
        page.wait_for_function(WAVES_DRAWN, timeout=30_000)
        _cards(page).first.get_by_test_id("play").click()
        page.wait_for_function(
            "() => { const p = document.getElementById('player'); return !p.paused && p.currentTime > 0.15; }",
            timeout=20_000,
        )
        assert "api_key" not in page.get_attribute("#player", "src")  # the media cookie authorises it
        expect(page.locator("#messages [data-testid=error-message]")).to_have_count(0)

    errors = [e for e in page.console_errors if "status of 401" not in e]
    assert not errors, "console errors:\n" + "\n".join(errors)


# ------------------------------------------------------------------- layout, actions, keyboard, a11y

AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core 4.14.1 (MPL-2.0, see vendor/axe-core.LICENSE)
LONG_NAME = "rain_on_a_roof_heavy_drops_on_corrugated_metal_recorded_with_contact_microphones_"
LONG_TAGS = {
    "description": "rain on a roof, heavy drops on corrugated metal with distant thunder and gutters overflowing",
    "recorded": "2019-03-01, a barn somewhere far away from the road",
    "microphone": "a pair of contact microphones and a very long microphone model name",
}
MIME = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}

# every control of every result card: on screen, inside the viewport, and the topmost element at
# its centre (nothing covers it), so a click lands on it
UNCLICKABLE = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('[data-testid=result-card] :is(button, a, [tabindex])')) {
    el.scrollIntoView({block: 'center', inline: 'nearest'});
    const r = el.getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!r.width || !r.height || r.left < 0 || r.right > innerWidth || !(top === el || el.contains(top)))
      bad.push(`${el.dataset.testid || el.className} of ${el.closest('[data-testid=result-card]').dataset.id}`
        + ` at ${Math.round(r.left)}..${Math.round(r.right)} covered by ${top && (top.id || top.className)}`);
  }
  scrollTo(0, 0);
  return bad;
}"""


def _long_metadata_on_card_two(route):
    """Search results as a real library gives them: card 2 has a long name and long tags."""
    response = route.fetch()
    data = response.json()
    for hit in data["items"][1:2]:
        hit["name"] = LONG_NAME + hit["name"]
        hit["tags"] = LONG_TAGS
    route.fulfill(response=response, json=data)


def _axe_violations(page, context: str) -> list[str]:
    """Serious and critical WCAG 2.1 A/AA violations axe-core finds on the page as it is now."""
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
      const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
                                         resultTypes: ['violations']});
      return r.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 5).map((n) => n.target.join(' ')).join(', ')}`);
    }""")
    return [f"{context}: {v}" for v in found]


def test_page_layout_from_360_to_1920_px(page, site, sync_api):
    """No sideways scrolling and every result button clickable, even with a long name and long tags
    (they used to push Similar/Tag under the right panel); small screens show results first with
    the filters behind a toggle; axe-core finds no serious accessibility violation."""
    expect = sync_api.expect
    page.route("**/v1/search?*", _long_metadata_on_card_two)
    violations = []
    for width in (360, 400, 800, 1400, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(site["url"] + "/?q=rain+on+a+roof")
        _wait_summary(page, expect, r"^\d+ results for “rain on a roof”")
        card = _cards(page).nth(1)
        expect(card.get_by_test_id("result-meta")).to_contain_text("description: rain on a roof")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"scrolls sideways at {width} px"
        # the whole file name is there to read: wrapped, never cut (and in the title on hover)
        name = card.get_by_test_id("result-name")
        assert name.evaluate("(n) => n.scrollWidth <= n.clientWidth && n.scrollHeight <= n.clientHeight + 1")
        expect(name).to_have_attribute("title", re.compile("^" + LONG_NAME))
        if width in (400, 800, 1400):
            assert page.evaluate(UNCLICKABLE) == [], f"at {width} px"

        toggle = page.get_by_test_id("filters-toggle")
        filters = page.get_by_test_id("filters-panel")
        if width <= 760:
            # results first: the first result is on the first screen, the filters are behind a toggle
            expect(filters).to_be_hidden()
            assert _cards(page).first.bounding_box()["y"] < 400
            expect(toggle).to_have_attribute("aria-expanded", "false")
            toggle.click()
            expect(filters).to_be_visible()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            expect(page.locator("#f-collection")).to_be_focused()
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            if width == 400:
                violations += _axe_violations(page, f"{width} px, filters open")
                page.press("#q", "Enter")  # a search puts the results first again
                _wait_summary(page, expect, r"^\d+ results for “rain on a roof”")
                expect(filters).to_be_hidden()
                expect(toggle).to_have_attribute("aria-expanded", "false")
            else:
                toggle.click()
                expect(filters).to_be_hidden()
        else:
            expect(toggle).to_be_hidden()
            expect(filters).to_be_visible()
        if width == 1400:
            violations += _axe_violations(page, f"{width} px")
            page.emulate_media(color_scheme="dark")
            violations += _axe_violations(page, f"{width} px, dark")
            page.emulate_media(color_scheme="light")
    assert not violations, "axe-core:\n" + "\n".join(violations)
    assert not page.console_errors, "console errors:\n" + "\n".join(page.console_errors)


def test_page_result_actions_and_keyboard(page, site, sync_api, tmp_path):
    """Copy path, download, drag-out (the audio file via DownloadURL), "Similar" shown in the search
    box, and the keyboard: up/down between results, space to play, Enter for similar."""
    import httpx

    expect = sync_api.expect
    url = site["url"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page.goto(url + "/?q=a+steady+electronic+sound")
    _wait_summary(page, expect, r"^\d+ results for “a steady electronic sound”")
    first = _cards(page).first
    item_id, name = first.get_attribute("data-id"), first.get_by_test_id("result-name").inner_text()
    path = first.get_by_test_id("result-path").get_attribute("title")
    assert path.endswith("/" + name) and Path(path).is_file()
    expect(first.get_by_test_id("result-name")).to_have_attribute("title", name)

    # copy path
    first.get_by_test_id("copy-path").click()
    expect(page.locator("#messages [data-testid=info-message]")).to_contain_text("Path copied")
    assert page.evaluate("navigator.clipboard.readText()") == path

    # download: the original file under its own name
    with page.expect_download() as download:
        first.get_by_test_id("download").click()
    assert download.value.suggested_filename == name
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)
    assert saved.read_bytes() == Path(path).read_bytes()

    # drag-out: the standard data a desktop folder or a DAW takes (Chromium's DownloadURL)
    # (a real mouse drag from the card; a listener after the card's own records what it set)
    page.evaluate("""() => document.addEventListener('dragstart', (ev) => {
      const dt = ev.dataTransfer;
      window.dragged = {download: dt.getData('DownloadURL'), uris: dt.getData('text/uri-list'),
                        text: dt.getData('text/plain'), draggable: ev.target.draggable};
    })""")
    first.locator(".rank").drag_to(page.locator("#results-summary"))
    dragged = page.evaluate("window.dragged")
    audio = f"{url}/v1/items/{item_id}/audio"
    assert dragged == {
        "download": f"{MIME[name.rsplit('.', 1)[1]]}:{name}:{audio}",
        "uris": audio,
        "text": audio,
        "draggable": True,
    }
    assert httpx.get(audio).content == Path(path).read_bytes()

    # keyboard: down from the search box into the results, up/down between them, space plays
    page.locator("#q").focus()
    page.keyboard.press("ArrowDown")
    expect(first).to_be_focused()
    page.keyboard.press("ArrowDown")
    second = _cards(page).nth(1)
    expect(second).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(first).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press(" ")
    page.wait_for_function("() => !document.getElementById('player').paused", timeout=20_000)
    expect(second).to_have_class(re.compile(r"\bplaying\b"))
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('player').paused")

    # Enter on a result: sounds like it; the search box says so and the first new result has focus
    second_id, second_name = second.get_attribute("data-id"), second.get_by_test_id("result-name").inner_text()
    page.keyboard.press("Enter")
    _wait_summary(page, expect, r"^\d+ results for sounds like “" + re.escape(second_name))
    expect(page.locator("#q")).to_have_value(f"sounds like {second_name}")
    assert f"similar={second_id}" in page.url and second_name not in _names(page)
    expect(_cards(page).first).to_be_focused()

    # the "Similar" button: the same, and Enter in the untouched box repeats that search
    third = _cards(page).nth(1)
    third_id, third_name = third.get_attribute("data-id"), third.get_by_test_id("result-name").inner_text()
    third.get_by_test_id("similar").click()
    _wait_summary(page, expect, r"^\d+ results for sounds like “" + re.escape(third_name))
    expect(page.locator("#q")).to_have_value(f"sounds like {third_name}")
    page.press("#q", "Enter")
    _wait_summary(page, expect, r"^\d+ results for sounds like “" + re.escape(third_name))
    assert f"similar={third_id}" in page.url
    page.fill("#q", "a low hum")
    page.press("#q", "Enter")
    _wait_summary(page, expect, r"^\d+ results for “a low hum”")
    assert not page.console_errors, "console errors:\n" + "\n".join(page.console_errors)
