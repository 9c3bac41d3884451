"""The built book in headless Chromium, with every request off this machine blocked (the network "unplugged").

The session builds the book with Jupyter Book, serves it on 127.0.0.1 and opens every page of the table of contents.
Screenshots are saved in ``_build/screenshots/`` as test artefacts.
"""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from PIL import Image

from aae_tutorial.figures import READABLE_PX, smallest_type_px
from test_book import ROOT, colab_url, toc_files



def find_chromium() -> str:
    """Debian's chromium: found on PATH, or installed with apt-get when running as root on Debian; else a clear
    failure that says how to get it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, env=env, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.fail("the browser tests need Chromium: install Debian's `chromium` package (sudo apt-get install "
                    "chromium) or put a `chromium` binary on PATH; building the book itself needs no browser")
    return found
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
HTML = ROOT / "_build" / "html"
WIDGET = "application/vnd.jupyter.widget-view+json"
SHOTS = ROOT / "_build" / "screenshots"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test log readable
        pass


@pytest.fixture(scope="session")
def site():
    """Build the book (as the README's book command does) and serve it on a free loopback port."""
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(ROOT)], check=True, capture_output=True, timeout=900)
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    chromium = find_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=FLAGS)
        yield b
        b.close()


def open_offline(browser, url: str):
    """A page whose requests to anything but 127.0.0.1 are aborted, with its console errors collected."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, external = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.endswith("/favicon.ico"):  # the browser's own probe; the book has no icon
            r.fulfill(status=204)
        elif urlparse(r.request.url).hostname in ("127.0.0.1", None) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page, errors, external


PAGES = toc_files()


@pytest.mark.parametrize("entry", PAGES)
def test_page_renders_offline(site, browser, entry):
    page, errors, external = open_offline(browser, f"{site}/{entry}.html")
    # Bring every lazy image into view, then wait for MathJax to finish typesetting.
    page.evaluate("""async () => {
        for (const img of document.images) { img.loading = 'eager'; img.scrollIntoView(); }
        await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
        if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
    }""")
    page.wait_for_timeout(300)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{Path(entry).name}.png"), full_page=True)

    assert not errors, f"console errors: {errors}"
    searches = page.evaluate("[...document.querySelectorAll('.search-button-field')]"
                             ".filter(e => e.getBoundingClientRect().width > 0).length")
    assert searches == 1, f"{searches} search boxes on the page"
    small = small_figure_text(page)
    assert not small, f"figure text under {READABLE_PX:g} px: {small}"
    broken = page.evaluate("[...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"images that did not load: {broken}"
    article = page.locator("article").inner_text()
    assert "$$" not in article, "raw TeX left on the page"
    if page.locator("script[src*='mathjax']").count() and "\\(" in page.content():
        assert page.locator("mjx-container").count() > 0, "equations not rendered by MathJax"
    assert not [u for u in external if "mathjax" in u or "html-manager" in u], "assets must be served locally"
    source = ROOT / f"{entry}.ipynb"
    if source.exists():
        hrefs = page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
        assert colab_url(f"{entry}.ipynb") in hrefs
        data = [o.get("data", {}) for c in nbformat.read(source, as_version=4).cells for o in c.get("outputs", [])]
        if any("latent-explorer" in d.get("text/html", "") for d in data):
            assert page.locator(".latent-explorer img").count() >= 1
            assert page.evaluate("[...document.querySelectorAll('.latent-explorer img')].every(i => i.naturalWidth > 0)")
        if any("|---|" in d.get("text/markdown", "") for d in data):  # results tables rendered as tables
            assert page.locator("article table").count() > 0
        if any(WIDGET in d and "text/html" not in d for d in data):  # progress bars, from the embedded state
            page.wait_for_selector(".jupyter-widgets", timeout=15_000)
    page.close()


def test_equations_render_on_the_vae_page(site, browser):
    page, errors, _ = open_offline(browser, f"{site}/book/02_vae.html")
    page.evaluate("async () => { await MathJax.startup.promise; }")
    assert page.locator("mjx-container").count() >= 3 and not errors
    page.close()


def test_latent_explorer_slider_changes_the_image(site, browser):
    page, errors, _ = open_offline(browser, f"{site}/book/03_aae.html")
    explorer = page.locator(".latent-explorer").first
    before = explorer.locator("img").get_attribute("src")
    explorer.locator("input.z1").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    after = explorer.locator("img").get_attribute("src")
    assert explorer.locator(".v1").inner_text() != "+0.00" and before != after and not errors
    page.close()


#: Each book figure on the page: its file name and the width it is shown at (CSS px).
FIGURES = """[...document.querySelectorAll('article img')].filter(i => i.src.includes('/_images/'))
    .map(i => [decodeURIComponent(i.src.split('/').pop()), i.getBoundingClientRect().width])"""
#: Figures whose readable width (their min-width) is more than their output box gives them.
FIGURES_THAT_SCROLL = """[...document.querySelectorAll('article .cell_output img')]
    .filter(i => i.getBoundingClientRect().width > i.parentElement.clientWidth + 1)
    .map(i => [i.src.split('/').pop(), Math.round(i.getBoundingClientRect().width)])"""


def small_figure_text(page) -> list[str]:
    """Figures whose smallest text, as the page shows them, is under READABLE_PX: from the size each PNG records
    (:func:`aae_tutorial.figures.png`), its native width and the width it is rendered at."""
    found = []
    for name, shown in page.evaluate(FIGURES):
        path = HTML / "_images" / name
        native_px = smallest_type_px(path)
        if native_px is None:
            found.append(f"{name} records no text size: re-execute its chapter")
            continue
        with Image.open(path) as image:
            rendered = native_px * shown / image.width
        if rendered < READABLE_PX - 0.05:
            found.append(f"{name}: smallest text {rendered:.1f} px")
    return found


#: What may not stick out of the article's column: code, outputs, tables, equations and figures.
WIDE = """() => {
    const column = document.querySelector('article').getBoundingClientRect();
    const sel = 'article pre, article .cell_output, article table, article mjx-container, article img, article p';
    // inside a box that scrolls sideways (a wide table, a long equation) content may extend: the box itself is checked
    const inScrollBox = e => { for (let a = e.parentElement; a && a.tagName !== 'ARTICLE'; a = a.parentElement) {
        if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
    const wide = [...document.querySelectorAll(sel)]
        .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > column.right + 1; })
        .filter(e => !inScrollBox(e))
        .map(e => `${e.tagName} ${Math.round(e.getBoundingClientRect().width)} px: ${(e.textContent || e.src || '')
            .trim().slice(0, 60)}`);
    const clipped = [...document.querySelectorAll('article pre')]
        .filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => `PRE scrolls ${e.scrollWidth - e.clientWidth} px: ${e.textContent.trim().slice(0, 60)}`);
    return {wide, clipped, page: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_nothing_is_wider_than_its_column(site, browser, width):
    """At a desktop width and on a phone: no code, output, table, equation or figure sticks out of the column, no code
    or text output hides lines that slide out of view, and no page scrolls sideways."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = {}
    for entry in PAGES:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.route("**/*", lambda r: r.continue_() if urlparse(r.request.url).hostname in ("127.0.0.1", None)
                   else r.abort())
        page.goto(f"{site}/{entry}.html", wait_until="load")
        page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
        found = page.evaluate(WIDE)
        found["wide"] += small_figure_text(page)
        if width == 1280:  # on a desktop every figure fits the column without scrolling its box
            found["wide"] += [f"{name} needs {need} px" for name, need in page.evaluate(FIGURES_THAT_SCROLL)]
        if width == 390:
            page.screenshot(path=str(SHOTS / f"{Path(entry).name}-phone.png"), full_page=True)
        page.close()
        listed = found["wide"] + found["clipped"]
        if found["page"] > found["viewport"]:
            listed.append(f"the page is {found['page']} px wide in a {found['viewport']} px window")
        if listed:
            problems[entry] = listed[:5]
    assert not problems, f"clipped or too wide at {width} px: {problems}"
