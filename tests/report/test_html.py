"""report.html: written by every run (also a resumed one) and by `raynas report --html`; rendered
in headless Chromium (Debian's `chromium` package): it loads with no console message, holds every
chart with content, and fetches nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from tests.experiment.cli_helpers import run_cli, sets

pytestmark = pytest.mark.slow

#: the charts of a finished run: graph; supernet x3; search; accuracy vs params, vs FLOPs;
#: retrain curves x2 and final accuracies; candidate shares
CHARTS = 11


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("headless Chromium is needed to render report.html: apt-get install -y chromium")
    return path


def render(page, *args: str) -> subprocess.CompletedProcess:
    """Chromium on ``page`` (headless, console messages on stderr)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run([*cmd, page.as_uri()], capture_output=True, text=True, timeout=180)


class Charts(HTMLParser):
    """For every ``<svg class="chart ...">``: how many data marks (``class="mark ..."``) it holds."""

    def __init__(self):
        super().__init__()
        self.charts: list[int] = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "svg" and "chart" in classes:
            self.charts.append(0)
            self.depth += 1
        elif tag == "svg" and self.depth:
            self.depth += 1
        if self.depth and "mark" in classes:
            self.charts[-1] += 1

    def handle_endtag(self, tag):
        if tag == "svg" and self.depth:
            self.depth -= 1


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A --local run stopped after the search, then resumed to the end."""
    storage = tmp_path_factory.mktemp("html")
    root = storage / "html"
    first = run_cli("search", "--local", "--until", "search", *sets(storage, "html"))
    assert first.returncode == 0, first.stderr[-3000:]
    before = (root / "report.html").read_text()
    second = run_cli("search", "--local", "--resume", str(root))
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"report: {root}/report.html" in second.stdout
    return root, before


def test_every_run_writes_the_report_also_a_resumed_one(resumed):
    root, before = resumed
    assert "No architecture has been retrained yet." in before and "search trajectory" in before
    after = (root / "report.html").read_text()
    assert "No architecture has been retrained yet." not in after
    assert "retrain: validation accuracy per epoch" in after


def test_the_report_renders_in_chromium_with_every_chart_filled(resumed, tmp_path):
    root, _before = resumed
    page = root / "report.html"
    html = page.read_text()
    # self-contained: no script, nothing to fetch (the only URL is SVG's namespace)
    assert "<script" not in html and not re.search(r"\b(src|href)\s*=", html)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    dom = render(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    parser = Charts()
    parser.feed(dom.stdout)
    assert len(parser.charts) == CHARTS and all(parser.charts), parser.charts
    shot = tmp_path / "report.png"
    taken = render(page, f"--screenshot={shot}", "--window-size=1280,4200", "--hide-scrollbars")
    assert taken.returncode == 0 and shot.stat().st_size > 50_000, taken.stderr[-2000:]
    shutil.copy(shot, root / "report-screenshot.png")  # to look at by hand: the run's folder is kept by pytest


def test_a_broken_page_is_caught(tmp_path):
    """The checks above can fail: a script error reaches the console, an empty chart counts as empty."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><svg class="chart"><rect/></svg><script>undefinedName();</script></body></html>')
    dom = render(page, "--dump-dom")
    assert any("undefinedName" in line for line in console_messages(dom.stderr))
    parser = Charts()
    parser.feed(dom.stdout)
    assert parser.charts == [0]


def test_report_command_writes_the_html_on_demand(resumed, tmp_path):
    root, _before = resumed
    out = tmp_path / "elsewhere.html"
    result = run_cli("report", str(root), "--html", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"report: {out}"
    assert out.read_text().count('<svg class="chart') == CHARTS
