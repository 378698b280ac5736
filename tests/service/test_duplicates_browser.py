"""The duplicates view, the tempo/key filters and the hardware line of the web page, in a real browser (Debian's
chromium driven by Playwright) against the real app under uvicorn.

The library: three distinct recordings, one known duplicate pair (a recording and its FLAC
re-encode, 6 dB quieter and 0.3 s shorter) and two chord progressions (A minor, C major),
ingested with ``--analyze``. The user opens "Duplicates" and sees exactly that pair as one group, with the
reason and the scores; the footer says what the model and FAISS run on, and a CUDA request that
fell back to the CPU (a /readyz answer routed in by the test) is shown as a warning.

Skips when chromium or the playwright package is missing, unless CLAPSEARCH_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from tests.dup_library import DEMO, MODEL
from tests.helpers import unavailable
from tests.music_library import chord_progression, write_wav
from tests.service.browser import CHROMIUM, CHROMIUM_ARGS, REPO, serve

pytestmark = pytest.mark.slow
DISTINCT = ["cat_meow", "chain_rattle", "car_horn"]
PAIR = {"applause.wav", "applause_trim.flac"}
FOUND = "() => /^(\\d+ groups?|No duplicates) /.test(document.querySelector('#dup-summary').textContent)"


@pytest.fixture(scope="module")
def site(tmp_path_factory, sync_api):
    if not (MODEL / "manifest.json").is_file():
        unavailable(f"the model is missing: {MODEL}")
    base = tmp_path_factory.mktemp("dups-page")
    library, home = base / "library", base / "home"
    library.mkdir()
    for name in DISTINCT:
        x, sr = sf.read(DEMO / f"{name}.ogg", always_2d=True, dtype="float32")
        sf.write(library / f"{name}.wav", x, sr)
    x, sr = sf.read(DEMO / "applause.ogg", always_2d=True, dtype="float32")
    sf.write(library / "applause.wav", x, sr)
    sf.write(library / "applause_trim.flac", 0.5 * x[int(0.3 * sr) :], sr)  # -6 dB, 0.3 s trimmed
    for key in ("A minor", "C major"):
        write_wav(library / f"{key.replace(' ', '_').lower()}.wav", chord_progression(key))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(CLAPSEARCH_HOME=str(home), CLAPSEARCH_MODEL=str(MODEL), PYTHONUNBUFFERED="1")
    ingest = subprocess.run(
        [sys.executable, "-c", "from indexer.cli import main; main()", "ingest", str(library), "-q", "--analyze"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ingest.returncode == 0, f"indexer ingest failed:\n{ingest.stdout}\n{ingest.stderr}"
    with serve(env, base / "uvicorn.log") as url:
        yield url


@pytest.fixture()
def page(sync_api):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            pg.set_default_timeout(30_000)
            pg.console_errors = []
            pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
            pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
            yield pg
        finally:
            browser.close()


def test_the_duplicates_view_groups_the_known_pair_with_reason_and_scores(site, page):
    page.goto(site)
    page.get_by_test_id("duplicates-toggle").click()
    groups = page.get_by_test_id("duplicate-group")
    page.wait_for_function(FOUND, timeout=90_000)  # the first call searches the collection
    assert groups.count() == 1
    members = groups.first.get_by_test_id("duplicate-member")
    names = {members.nth(i).locator("a").inner_text() for i in range(members.count())}
    assert names == PAIR
    text = groups.first.inner_text()
    assert "vector similarity" in text and "different formats" in text  # the reason, as the core words it
    scores = [float(members.nth(i).locator(".dup-score").inner_text()) for i in range(members.count())]
    assert all(0.95 <= s < 1.0 for s in scores)
    assert "1 group among 7 files" in page.get_by_test_id("duplicates-summary").inner_text()
    # a stricter threshold than the pair's similarity: no group, said so
    page.fill("#dup-threshold", f"{min(scores) + (1 - min(scores)) / 2:.4f}")
    page.locator("#dup-form button[type=submit]").click()
    page.wait_for_function("() => document.querySelector('#dup-summary').textContent.startsWith('No duplicates')")
    assert page.get_by_test_id("duplicate-group").count() == 0
    # a member opens its "similar" search
    page.fill("#dup-threshold", "")
    page.locator("#dup-form button[type=submit]").click()
    groups.first.wait_for()
    page.get_by_test_id("duplicate-member").first.locator("a").click()
    page.get_by_test_id("result-card").first.wait_for()
    assert page.console_errors == []


def test_the_key_and_tempo_filters_narrow_the_results(site, page):
    page.goto(site + "/?q=music&key=A%20minor")
    page.get_by_test_id("result-card").first.wait_for()
    assert page.get_by_test_id("filter-key").input_value() == "A minor"  # the URL fills the filter
    assert page.get_by_test_id("result-name").all_inner_texts() == ["a_minor.wav"]
    page.get_by_test_id("filter-key").fill("C")  # a note alone: either mode
    page.get_by_test_id("filter-key").press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=result-name]')].map(e => e.textContent).join() === 'c_major.wav'"
    )
    assert "key=C" in page.url
    page.get_by_test_id("filter-key").fill("")
    page.fill("#f-bpm-min", "55")
    page.fill("#f-bpm-max", "65")  # the progressions strike a chord a second
    page.press("#f-bpm-max", "Enter")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=result-name]').length === 2")
    assert sorted(page.get_by_test_id("result-name").all_inner_texts()) == ["a_minor.wav", "c_major.wav"]
    assert page.console_errors == []


def test_the_footer_says_what_the_model_and_faiss_run_on_and_warns_of_a_cpu_fallback(site, page):
    import httpx

    hardware = httpx.get(site + "/readyz").json()["hardware"]
    page.goto(site)
    line = page.get_by_test_id("hardware")
    line.wait_for()
    assert line.inner_text() == f"Running on: {hardware['summary']}"
    assert "warn" not in (line.get_attribute("class") or "") or hardware["model"]["fell_back_to_cpu"]

    fell_back = json.loads(json.dumps(hardware))
    fell_back["model"].update(requested="cuda", fell_back_to_cpu=True)
    fell_back["summary"] += " · CUDA requested but (part of) the model runs on the CPU"
    body = {**httpx.get(site + "/readyz").json(), "hardware": fell_back}
    page.route("**/readyz", lambda route: route.fulfill(status=200, json=body))
    page.reload()
    line.wait_for()
    assert "CUDA requested but (part of) the model runs on the CPU" in line.inner_text()
    assert "warn" in line.get_attribute("class")
    assert page.console_errors == []
