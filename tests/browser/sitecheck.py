"""Open pages of the built book in headless Chromium (selenium) and list what a reader would meet that is broken.

Used by the browser tests (``make test-book``). Nothing here downloads anything: Chromium and its driver are
Debian's (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; override with ``CHROMIUM`` / ``CHROMEDRIVER``), and
selenium-manager is kept offline and never asked for a driver.

:func:`serve` serves a folder on 127.0.0.1 (a thread, stopped on exit) and records every request it answers;
:func:`check_page` opens one page and returns a list of problems (empty: the page is fine):

* a JavaScript console error, or a request that failed (status >= 400 or a network error) or left 127.0.0.1;
* a plotly figure that is missing (fewer rendered ``.js-plotly-plot`` than the page's notebook has plotly
  outputs) or that holds no points;
* a widget output that neither rendered nor shows a visible "needs a live kernel" note;
* maths not typeset (a ``.math`` element without MathJax output) or raw ``$...$`` left in the text;
* an element wider than the text column (not inside a scroll box), a figure clipped by its box, a code line
  cut (an input cell that scrolls sideways), a plotly toolbar over a figure title;
* the draft banner present on a full build or missing on a quick one.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SITE = ROOT / "book" / "_build" / "html"
SCREENSHOTS = ROOT / "book" / "_build" / "screenshots"
REQUIRED = os.environ.get("LOCEDIT_BOOK_TEST") == "1"  # set by `make test-book`: missing site or tools fail
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
PAGE_TIMEOUT_S = 60
SETTLE_TIMEOUT_S = 15  # longest wait for MathJax and plotly to finish drawing
WINDOW = (1280, 1600)
DRAFT_BANNER_ID = "locedit-draft-banner"
LIVE_KERNEL_CLASS = "locedit-live-kernel"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# --------------------------------------------------------------------------------------------------------------
# the local server
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Server:
    root: Path
    port: int
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status), in order

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def failed(self) -> list[tuple[str, int]]:
        return [(p, s) for p, s in self.requests if s >= 400]


@contextlib.contextmanager
def serve(root: Path) -> Iterator[Server]:
    """Serve ``root`` on 127.0.0.1 (a free port) from a daemon thread; shut down and joined on exit."""
    server_info = Server(Path(root), 0)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            code = getattr(code, "value", code)
            status = int(code) if str(code).isdigit() else 0
            server_info.requests.append((urllib.parse.unquote(self.path.split("?")[0]), status))

        def log_message(self, format, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    httpd.daemon_threads = True
    server_info.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server_info
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------------------------------
def missing_tools() -> str | None:
    """Why the browser tests cannot run here (``None`` when they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make test-book installs it: scripts/setup_browser.sh)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found (make test-book installs Debian's chromium and chromium-driver)"
    return None


@contextlib.contextmanager
def browser(window: tuple[int, int] = WINDOW):
    """Headless Debian Chromium driven by selenium; every host other than 127.0.0.1 is unresolvable."""
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager: never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        driver.set_script_timeout(SETTLE_TIMEOUT_S + 15)
        yield driver
    finally:
        driver.quit()


# Scripts run in the page: wait for MathJax and plotly; read what check_page checks.
SETTLE_JS = (HERE / "settle.js").read_text()
MEASURE_JS = (HERE / "measure.js").read_text()

RAW_MATH = re.compile(r"(?<![\\$\w])\$(?!\s)[^$\n]{1,200}?(?<!\s)\$(?!\w)|\\\(|\\\[|\$\$")


@dataclass
class Expectation:
    """What a page's notebook says it should show (counted from the notebook the page was built from)."""

    plotly_figures: int = 0
    images: int = 0
    widgets: int = 0


def expectation_from_notebook(path: Path) -> Expectation:
    nb = json.loads(Path(path).read_text())
    exp = Expectation()
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = "".join(data.get("text/html", ""))
            if PLOTLY_MIME in data or 'class="plotly-graph-div"' in html:  # a figure (not plotly.js itself)
                exp.plotly_figures += 1
            if "image/png" in data or "image/svg+xml" in data:
                exp.images += 1
            if WIDGET_MIME in data:
                exp.widgets += 1
    return exp


def _network_problems(driver, base_url: str) -> list[str]:
    """Requests that left 127.0.0.1 or failed, from Chromium's performance (DevTools) log."""
    problems = []
    base = urllib.parse.urlparse(base_url)
    urls = {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params["requestId"]] = url
            parsed = urllib.parse.urlparse(url)
            if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname != base.hostname:
                problems.append(f"request to another host: {url}")
        elif method == "Network.responseReceived":
            status = params["response"]["status"]
            if status >= 400:
                problems.append(f"HTTP {status}: {params['response']['url']}")
        elif method == "Network.loadingFailed":
            url = urls.get(params["requestId"], "?")
            if not params.get("canceled") and urllib.parse.urlparse(url).hostname == base.hostname:
                problems.append(f"request failed ({params.get('errorText')}): {url}")
    return problems


def check_page(driver, url: str, *, expect: Expectation | None = None, quick: bool | None = None,
               screenshot: Path | None = None) -> list[str]:  # fmt: skip
    """Open ``url`` and return what is wrong with it (see the module docstring); ``[]`` when nothing is."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what earlier pages left
    driver.get(url)
    driver.execute_async_script(SETTLE_JS, SETTLE_TIMEOUT_S)
    m = driver.execute_script(MEASURE_JS, {"banner": DRAFT_BANNER_ID, "note": LIVE_KERNEL_CLASS})
    problems = []

    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message'][:300]}")
    problems += _network_problems(driver, url)

    for p in m["plots"]:
        if p["traces"] == 0 or not any(n > 0 for n in p["points"]):
            problems.append(f"plotly figure {p['id']} holds no data (traces {p['traces']}, points {p['points']})")
        if p["svgWidth"] > p["boxWidth"] + 1 or p["right"] > m["column"]["right"] + 1:
            problems.append(
                f"plotly figure {p['id']} ({p['title'][:40]!r}) is {p['svgWidth']:.0f} px wide in a "
                f"{p['boxWidth']:.0f} px box (column {m['column']['width']:.0f} px): part of it is hidden"
            )
        if p["titleOutside"]:
            problems.append(f"plotly figure {p['id']}: its title runs off the figure: {p['title'][:60]!r}")
        if p["titleUnderToolbar"]:
            problems.append(f"plotly figure {p['id']}: the toolbar covers its title {p['title'][:40]!r}")
    for d in m["undrawn"]:
        problems.append(f"plotly output not drawn: {d}")
    if expect is not None:
        if len(m["plots"]) < expect.plotly_figures:
            problems.append(f"{expect.plotly_figures} plotly figures in the notebook, {len(m['plots'])} on the page")
        shown = [i for i in m["images"] if i["ok"]]
        if len(shown) < expect.images:
            problems.append(f"{expect.images} images in the notebook, {len(shown)} shown on the page")
    for img in m["images"]:
        if not img["ok"]:
            problems.append(f"image not shown: {img['src'][:80]}")

    for w in m["widgetViews"]:
        if not (w["rendered"] or w["note"]):
            problems.append("a widget neither rendered nor shows a visible 'needs a live kernel' note")
    if expect is not None and expect.widgets and not m["widgetViews"] and m["notesVisible"] < expect.widgets:
        problems.append(f"{expect.widgets} widgets in the notebook, {m['notesVisible']} 'needs a live kernel' notes")

    for t in m["untypeset"]:
        problems.append(f"maths not typeset: {t!r}")
    for raw in RAW_MATH.findall(m["text"])[:5]:
        problems.append(f"raw maths left in the text: {raw[:60]!r}")

    for w in m["wide"]:
        problems.append(f"wider than the text column: {w}")
    for line in m["cutCode"][:3]:
        problems.append(f"code line cut (the cell scrolls sideways): {line!r}")

    if quick is not None and bool(m["banner"]) != quick:
        problems.append("quick build without a visible draft banner" if quick else "draft banner on a full build")

    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    return problems


def site_missing() -> str | None:
    """Why there is no site to test (``None`` when book/_build/html holds one)."""
    if not (SITE / "index.html").is_file():
        return f"no built site at {SITE.relative_to(ROOT)} (run `make book`, or `QUICK=True make book`)"
    return None


def chapter_notebook(site: Path, page: str) -> Path | None:
    """The notebook a chapter page was built from (Sphinx keeps a copy under _sources/)."""
    if not page.startswith("chapters/"):
        return None
    nb = site / "_sources" / (page[: -len(".html")] + ".ipynb")
    return nb if nb.is_file() else None


def pages(html: Path) -> list[str]:
    """Every page of a built site, as paths relative to ``html`` (the Sphinx search and index pages included)."""
    return sorted(
        str(p.relative_to(html)) for p in Path(html).rglob("*.html") if not p.relative_to(html).parts[0].startswith("_")
    )
