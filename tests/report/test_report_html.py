"""report.html in a real headless Chromium: it loads without an error or a request of its own,
decodes every figure, and shows every run's and every method's row.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright (no browser download). Under
CI (``CI=true``) a missing browser fails these tests; elsewhere they skip and say why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from leash.report.main import main
from leash.report.runs import load_runs
from leash.report.seeds import methods_over_seeds
from report.test_curves import seeded_runs
from report.test_report import write_run

CHROMIUM = Path("/usr/bin/chromium")
PAGE_TIMEOUT_MS = 30_000


def _playwright_or_skip():
    """Playwright's sync API, once Chromium is known to be there; fail under CI, else skip."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the browser test needs playwright (pip install -e '.[dev]')"
    if not CHROMIUM.is_file():
        missing = f"the browser test needs Debian's chromium at {CHROMIUM} (apt-get install it)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return sync_playwright


@dataclass
class PageLoad:
    """What the browser saw while loading a page."""

    console_errors: list[str]
    page_errors: list[str]
    requests: list[str]
    """Every URL the page requested (the page itself included; ``data:`` URIs are no request)."""
    images: list[dict]
    """Each ``<img>``: its alt text, whether it decoded, its natural width."""
    tables: list[list[str]]
    """Each table's first cell of every body row."""
    captions: dict[str, str]
    """Each ``<figure>``'s caption text by the figure's id."""
    overflows: bool
    """Whether the page is wider than the window (a table or figure that does not fit)."""


IMAGES_JS = """async () => Promise.all(Array.from(document.images).map(async (img) => {
    const decoded = await img.decode().then(() => true, () => false);
    return {alt: img.alt, decoded: decoded, width: img.naturalWidth};
}))"""
TABLES_JS = """() => Array.from(document.querySelectorAll("table")).map(
    (t) => Array.from(t.tBodies[0].rows).map((r) => r.cells[0].innerText))"""
CAPTIONS_JS = """() => Object.fromEntries(Array.from(document.querySelectorAll("figure")).map(
    (f) => [f.id, f.querySelector("figcaption").innerText]))"""


def load_page(browser, path: Path) -> PageLoad:
    """Open ``path`` in a fresh page and record its errors, requests, images and tables; any
    request off the file system is aborted (the test machine may have no network)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    console, errors, requests = [], [], []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
               else route.abort())
    page.goto(path.as_uri(), wait_until="load")
    load = PageLoad(
        console_errors=console, page_errors=errors,
        requests=[url for url in requests if not url.startswith("data:")],
        images=page.evaluate(IMAGES_JS), tables=page.evaluate(TABLES_JS),
        captions=page.evaluate(CAPTIONS_JS),
        overflows=page.evaluate("() => document.documentElement.scrollWidth > innerWidth"),
    )
    page.close()
    return load


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_playwright = _playwright_or_skip()
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report of two DPO seeds, a PPO run, an RM run without a log and a failed run."""
    root = seeded_runs(tmp_path_factory.mktemp("runs"))
    write_run(root / "crashed", algo="ipo")
    assert main([str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def loaded(browser, report: Path) -> PageLoad:
    return load_page(browser, report / "report.html")


def test_report_html_loads_without_errors_or_requests(loaded: PageLoad, report: Path) -> None:
    assert loaded.console_errors == [] and loaded.page_errors == []
    assert loaded.requests == [(report / "report.html").as_uri()]
    assert not loaded.overflows


def test_every_figure_is_embedded_and_decodes(loaded: PageLoad, report: Path) -> None:
    assert [image["alt"] for image in loaded.images] == ["frontier", "cost", "curves"]
    assert all(image["decoded"] and image["width"] > 0 for image in loaded.images)
    for name in ("frontier.png", "cost.png", "curves.png"):
        assert (report / name).is_file()


def test_every_run_and_method_has_its_row(loaded: PageLoad, report: Path) -> None:
    runs = load_runs(report)
    methods = methods_over_seeds(runs)
    assert [m.name for m in methods] == ["dpo-exact"]
    assert loaded.tables == [[m.name for m in methods], [run.name for run in runs]]
    assert "ipo-exact" in loaded.tables[1]  # the failed run keeps its row


def test_curves_caption_names_every_method_with_a_log(loaded: PageLoad) -> None:
    caption = loaded.captions["curves"]
    for name in ("dpo-exact", "ppo-exact"):
        assert f"{name}: " in caption
    assert "reward-exact" not in caption  # it has no log to draw


def test_report_md_points_to_report_html(report: Path) -> None:
    markdown = (report / "report.md").read_text()
    assert "[report.html](report.html)" in markdown and "![curves](curves.png)" in markdown


def test_the_checks_catch_a_broken_page(browser, tmp_path: Path) -> None:
    """The same checks on a page that breaks each rule: they see every fault."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><table><tbody><tr><td>only-row</td></tr></tbody></table>"
        '<img alt="remote" src="https://example.invalid/figure.png">'
        '<img alt="corrupt" src="data:image/png;base64,iVBORw0KGgo=">'
        '<script>console.error("boom"); throw new Error("thrown");</script>'
        '<div style="width: 3000px">wide</div></body></html>'
    )
    load = load_page(browser, page)
    assert "boom" in load.console_errors
    assert any("thrown" in error for error in load.page_errors)
    assert "https://example.invalid/figure.png" in load.requests
    assert [(i["alt"], i["decoded"], i["width"]) for i in load.images] == [
        ("remote", False, 0), ("corrupt", False, 0)]
    assert load.tables == [["only-row"]] and load.overflows
