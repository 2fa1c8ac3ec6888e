"""The built book, opened page by page in a real browser (headless Chromium driven by selenium), offline.

What a reader meets is checked where only a browser can check it:

- every formula is typeset by MathJax (no raw ``\\(``, ``\\frac``, ``$$`` ... left in the visible text, no
  MathJax error boxes);
- every image loaded (``naturalWidth > 0``);
- nothing is fetched from outside the book: no script, style sheet, font or image with an http(s) URL
  (the DOM's ``src``/``href`` and the browser's own list of loaded resources are both checked);
- figures are not shrunk so far that their lettering drops below 9 pt on the page (see
  ``test_figures_keep_their_lettering_legible``).

The test reads the book that ``make book`` (or ``make test``, which builds it first) wrote to
``_build/html``; ``XAI_BOOK_HTML`` points it elsewhere. Without Chromium and chromedriver (Debian:
``apt-get install chromium chromium-driver``) or without a built book it is skipped with one line saying
why; with ``XAI_REQUIRE_BROWSER=1`` (set by ``.ci/run``) it fails instead, so CI cannot skip it silently.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_HTML = Path(os.environ.get("XAI_BOOK_HTML", ROOT / "_build" / "html")).resolve()
REQUIRE = os.environ.get("XAI_REQUIRE_BROWSER") == "1"
#: A common laptop window; sphinx-book-theme then shows both sidebars and a text column of 676 CSS px.
WINDOW = (1280, 900)
#: Smallest lettering a figure may have on the page, in CSS points (1 pt = 1/72 in = 4/3 CSS px).
MIN_RENDERED_PT = 9.0

REFRESH = re.compile(r'<meta http-equiv="refresh" content="\d+; ?url=([^"]+)"', re.IGNORECASE)


def _redirect(page: Path) -> str | None:
    """Return the target of a page that only redirects (Jupyter Book's index.html), else None."""
    match = REFRESH.search(page.read_text(encoding="utf-8", errors="replace")[:2000])
    return match.group(1) if match else None


ALL_PAGES = sorted(p for p in BOOK_HTML.rglob("*.html")
                   if not {"_static", "_sources", "_images"} & set(p.relative_to(BOOK_HTML).parts))
PAGES = [p for p in ALL_PAGES if _redirect(p) is None]

#: LaTeX that MathJax should have replaced: delimiters, and a backslash command (two letters or more).
RAW_MATHS = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\[A-Za-z]{2,}")

# Visible text outside code, maths and scripts: what a reader sees as prose, captions and tables.
VISIBLE_TEXT_JS = """
const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'NOSCRIPT', 'MJX-CONTAINER', 'TEXTAREA']);
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const parts = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  let el = node.parentElement, hidden = false;
  for (let a = el; a; a = a.parentElement) {
    if (skip.has(a.tagName)) { hidden = true; break; }
  }
  if (hidden || !el.getClientRects().length) continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden' || style.display === 'none') continue;
  parts.push(node.textContent);
}
return parts.join(' ');
"""

# Every URL the page refers to for something it loads (not plain links), and every resource it loaded.
LOADED_URLS_JS = """
const urls = [];
for (const el of document.querySelectorAll('script[src], img[src], iframe[src], source[src], video[src], audio[src], embed[src]')) urls.push(el.src);
for (const el of document.querySelectorAll('link[href]')) {
  if (!/(^|\\s)(canonical|alternate|next|prev|search|index|author|license)(\\s|$)/i.test(el.rel)) urls.push(el.href);
}
for (const entry of performance.getEntriesByType('resource')) urls.push(entry.name);
return urls;
"""

WAIT_FOR_PAGE_JS = """
const done = arguments[arguments.length - 1];
for (const img of document.images) img.loading = 'eager';
const images = Promise.all(Array.from(document.images).map(img => img.complete ? null :
  new Promise(resolve => { img.addEventListener('load', resolve); img.addEventListener('error', resolve); })));
const maths = (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise
                                                                            : Promise.resolve();
Promise.all([images, maths]).then(() => done(true), err => done(String(err)));
"""

IMAGES_JS = """
return Array.from(document.images).map(img => ({
  src: img.getAttribute('src'), complete: img.complete, natural: img.naturalWidth,
  shown: img.getBoundingClientRect().width, figure: !!img.closest('figure, div.figure, .cell_output')}));
"""


def _unavailable(reason: str):
    """Skip with ``reason``, or fail when the browser test is required (CI)."""
    if REQUIRE:
        pytest.fail(reason + " (XAI_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(reason)


def _png_dpi(path: Path) -> float | None:
    """Return the dots per inch recorded in a PNG's pHYs chunk (matplotlib writes it), or None."""
    data = path.read_bytes()
    at = data.find(b"pHYs")
    if data[:8] != b"\x89PNG\r\n\x1a\n" or at < 0:
        return None
    per_x, _, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    return per_x * 0.0254 if unit == 1 else None


@pytest.fixture(scope="module")
def browser():
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        _unavailable("Chromium or chromedriver is not installed (Debian: apt-get install chromium "
                     "chromium-driver), so the built book cannot be checked in a browser.")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -r requirements.txt).")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--allow-file-access-from-files", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(browser, request):
    """Open every page once; return what each shows. Also writes the counts to _build/browser-report.json."""
    if not PAGES:
        _unavailable(f"No built book in {BOOK_HTML}; run `make book` first.")
    seen = {}
    for page in PAGES:
        browser.get(page.as_uri())
        status = browser.execute_async_script(WAIT_FOR_PAGE_JS)
        seen[page.relative_to(BOOK_HTML).as_posix()] = {
            "wait": status,
            "text": browser.execute_script(VISIBLE_TEXT_JS),
            "formulas": browser.execute_script("return document.querySelectorAll('mjx-container').length"),
            "maths_errors": browser.execute_script(
                "return Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent)"),
            "urls": browser.execute_script(LOADED_URLS_JS),
            "images": browser.execute_script(IMAGES_JS),
        }
    report = {"pages": len(seen), "formulas_typeset": sum(p["formulas"] for p in seen.values()),
              "images_checked": sum(len(p["images"]) for p in seen.values()),
              "per_page": {name: {"formulas": p["formulas"], "images": len(p["images"])}
                           for name, p in seen.items()}}
    try:
        (BOOK_HTML.parent / "browser-report.json").write_text(json.dumps(report, indent=1))
    except OSError:
        pass
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even though pytest captures the test's output
            reporter.write_line(f"\nbrowser test: {report['pages']} pages, {report['formulas_typeset']} "
                                f"formulas typeset, {report['images_checked']} images checked ({BOOK_HTML})")
    return seen


def test_redirect_pages_point_at_a_built_page():
    broken = [p.name for p in ALL_PAGES if _redirect(p) and not (p.parent / _redirect(p)).is_file()]
    assert not broken, f"pages that redirect to a missing page: {broken}"


#: A phone's screen (CSS px) beside the laptop window: no page may scroll sideways at either.
PHONE = (390, 844)

OVERFLOW_JS = """
const width = document.documentElement.clientWidth;
const wide = [];
for (const el of document.querySelectorAll('article *')) {
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.right <= width + 1 || el.closest('mjx-assistive-mml')) continue;
  // inside a box that scrolls sideways on its own (a wide table, a formula): allowed
  let scrolls = false;
  for (let a = el.parentElement; a; a = a.parentElement) {
    const style = getComputedStyle(a);
    if ((style.overflowX === 'auto' || style.overflowX === 'scroll') && a.getBoundingClientRect().right <= width + 1) {
      scrolls = true; break; }
  }
  if (!scrolls) wide.push(el.tagName + '.' + el.className + ': ' + Math.round(box.right) + ' px');
}
// a table's caption is prose: it wraps inside the box the table scrolls in, never scrolls with the table
for (const caption of document.querySelectorAll('article table caption')) {
  const box = caption.closest('table').parentElement.getBoundingClientRect();
  const right = caption.getBoundingClientRect().right;
  if (right > Math.min(box.right, width) + 1) wide.push('caption "' + caption.textContent.slice(0, 40) + '": ' +
    Math.round(right) + ' px in a box ending at ' + Math.round(box.right) + ' px');
}
return {page: document.documentElement.scrollWidth, width: width, wide: wide.slice(0, 5)};
"""


def test_every_page_fits_a_laptop_and_a_phone_without_scrolling_sideways(browser):
    if not PAGES:
        _unavailable(f"No built book in {BOOK_HTML}; run `make book` first.")
    problems = {}
    try:
        for size in (WINDOW, PHONE):
            browser.set_window_size(*size)
            for page in PAGES:
                browser.get(page.as_uri())
                seen = browser.execute_script(OVERFLOW_JS)
                if seen["page"] > seen["width"] + 1 or seen["wide"]:
                    problems[f"{page.name} at {size[0]} px"] = seen
    finally:
        browser.set_window_size(*WINDOW)
    assert not problems, problems


def test_every_page_finished_loading(pages):
    stuck = {name: p["wait"] for name, p in pages.items() if p["wait"] is not True}
    assert not stuck, f"pages whose images or MathJax did not finish: {stuck}"


def test_every_formula_is_typeset(pages):
    raw = {name: sorted(set(RAW_MATHS.findall(p["text"])))[:8] for name, p in pages.items()
           if RAW_MATHS.search(p["text"])}
    assert not raw, f"raw LaTeX visible (MathJax did not typeset it): {raw}"
    errors = {name: p["maths_errors"] for name, p in pages.items() if p["maths_errors"]}
    assert not errors, f"MathJax errors: {errors}"
    assert sum(p["formulas"] for p in pages.values()) > 0, "no typeset formula in the whole book"


def test_every_image_loaded(pages):
    broken = {name: [i["src"] for i in p["images"] if not (i["complete"] and i["natural"] > 0)]
              for name, p in pages.items()}
    broken = {name: srcs for name, srcs in broken.items() if srcs}
    assert not broken, f"images that did not load: {broken}"


def test_nothing_is_loaded_from_outside_the_book(pages):
    outside = {name: sorted({u for u in p["urls"] if re.match(r"(?i)https?:|//", u)})
               for name, p in pages.items()}
    outside = {name: urls for name, urls in outside.items() if urls}
    assert not outside, f"scripts, styles, fonts or images loaded from the network: {outside}"


def test_figures_keep_their_lettering_legible(pages):
    """A figure drawn with >= 9 pt lettering keeps it on the page only if it is not shrunk to fit.

    Lettering of f pt in a PNG of d dpi is f * d / 72 image pixels; shown at ``shown / natural`` of its
    size it is f * d / 72 * shown / natural CSS px, i.e. f * d / 96 * shown / natural CSS pt. The plotting
    module draws no text below 9 pt (``plotting.MIN_FONT_PT``), so each figure's factor d / 96 *
    shown / natural must be at least MIN_RENDERED_PT / MIN_FONT_PT.
    """
    from xai_helpers.methods.plotting import MIN_FONT_PT

    shrunk = {}
    for name, p in pages.items():
        for image in p["images"]:
            if not image["figure"] or not image["natural"]:
                continue
            dpi = _png_dpi((BOOK_HTML / name).parent / image["src"]) or 100.0
            factor = dpi / 96 * image["shown"] / image["natural"]
            if factor * MIN_FONT_PT < MIN_RENDERED_PT - 0.05:
                shrunk.setdefault(name, []).append(f"{Path(image['src']).name}: 9 pt drawn -> "
                                                   f"{factor * MIN_FONT_PT:.1f} pt shown")
    assert not shrunk, f"figures shrunk below {MIN_RENDERED_PT:g} pt lettering at {WINDOW[0]} px: {shrunk}"


def test_the_index_page_of_hostile_photo_names_loads_its_figures_and_runs_no_script(browser, tmp_path):
    """``explain``'s index page for photos named as an attacker would name them: every figure loads, every
    link stays a file beside the page (clicking it runs nothing), and the page fits a phone's width."""
    from xai_helpers.cli.explain import safe_name
    from xai_helpers.cli.index_page import index_page

    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
           b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND"
           b"\xaeB`\x82")
    names = ["javascript:document.title='PWNED3';x.jpg", "100%#?.jpg", "a\nb.jpg",
             "<img src=x onerror=document.title='PWNED4'>.jpg", "evil\u202egnp.jpg"]
    entries = []
    for name in names:
        stem = safe_name(Path(name).stem)
        (tmp_path / f"{stem}_explained.png").write_bytes(png)
        (tmp_path / f"{stem}.json").write_text("{}")
        entries.append({"photo": name, "figure": f"{stem}_explained.png", "json": f"{stem}.json",
                        "report": {"attack": {"succeeded": True}, "eps": {"levels": 1.0},
                                   "clean": {"top5": [{"name": "a", "probability": 0.9}]},
                                   "adversarial": {"top5": [{"name": "b", "probability": 0.5}]}}})
    page = tmp_path / "index.html"
    page.write_text(index_page(entries, "hostile names"))
    browser.get(page.as_uri())
    assert browser.execute_script("return Array.from(document.images).every(i => i.naturalWidth > 0)")
    links = browser.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")
    assert len(links) == 3 * len(names) and all(link.startswith(tmp_path.as_uri()) for link in links)
    for k in range(len(links)):
        browser.get(page.as_uri())
        browser.execute_script("document.querySelectorAll('a')[arguments[0]].click()", k)
        assert browser.title not in ("PWNED3", "PWNED4") and browser.current_url.startswith("file://")
    browser.set_window_size(390, 844)
    try:
        browser.get(page.as_uri())
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.set_window_size(*WINDOW)
