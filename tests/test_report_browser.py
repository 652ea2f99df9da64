"""report.html in a real browser: headless Chromium loads every figure and nothing
overflows the page, at a desktop width and at a narrow one.

The page is opened from a copy with a small script added (the report itself has no
scripts): after the load event it writes what it measured into the DOM, which
``chromium --headless --dump-dom`` prints. The browser test is skipped, saying why,
where Chromium is not installed (Debian: ``apt-get install chromium``);
``GOSSAMER_CHROMIUM`` names another binary. That every figure is a PNG that decodes is
checked without a browser too.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import gossamer
from conftest import SMALL

BROWSERS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
CHROMIUM = os.environ.get("GOSSAMER_CHROMIUM") or next(filter(shutil.which, BROWSERS), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium, or set "
    "GOSSAMER_CHROMIUM to a Chrome binary): report.html is not checked in a browser",
)

# Run after the page loaded: every image decoded (naturalWidth > 0), the page's
# scroll width against its visible width, and the elements that reach past it.
MEASURE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const visible = document.documentElement.clientWidth;
  const wide = [...document.body.querySelectorAll('*')].filter(
    (e) => e.getBoundingClientRect().right > visible + 0.5 && !e.closest('pre, .table')
  );
  const check = document.createElement('pre');
  check.id = 'gossamer-check';
  check.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: visible,
    wide: wide.slice(0, 5).map((e) => `${e.tagName} to ${e.getBoundingClientRect().right}px`),
  });
  document.body.appendChild(check);
});
</script>"""


def measured(page: Path, width: int, tmp_path: Path) -> dict:
    """What the script measured, in a window ``width`` pixels wide."""
    copy = tmp_path / f"measured_{width}.html"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", f"{MEASURE}</body>"))
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # as root in containers (CI); the page is our own file
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={width},900",
        "--dump-dom",
        copy.resolve().as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="gossamer-check">(.*?)</pre>', done.stdout, re.S)
    assert found, (
        f"{CHROMIUM} printed no measurement (exit {done.returncode}): {done.stderr[-2000:]}"
    )
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def comparison_report(tmp_path_factory) -> Path:
    """A comparison of two variants under churn and message loss, with sampled
    evaluations: a results table, overlaid plots and a section per variant."""
    out = tmp_path_factory.mktemp("browser") / "cmp"
    source = {
        **SMALL,
        "rounds": 6,
        "eval": {"nodes": 3},
        "network": {"availability": {"kind": "bernoulli", "online": 0.7}, "delivery": 0.8},
        "variants": {
            "D-PSGD with a long name to widen the table": {},
            "periodic b=2": {"protocol": {"name": "periodic", "period": 2}},
        },
    }
    gossamer.compare(source, out=out, report=True)
    return out / "report.html"


def test_every_figure_is_an_image_that_decodes(comparison_report):
    page = comparison_report.read_text(encoding="utf-8")
    sources = re.findall(r"<img alt='[^']*' src='data:image/png;base64,([^']+)'>", page)
    assert len(sources) == page.count("<figure>") == page.count("<img ") > 10
    for data in sources:  # what the browser decodes: a PNG, whole
        png = base64.b64decode(data, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")


@needs_chromium
@pytest.mark.parametrize("width", [1280, 640])
def test_the_browser_loads_every_figure_and_nothing_overflows(comparison_report, width, tmp_path):
    seen = measured(comparison_report, width, tmp_path)
    assert seen["images"] == comparison_report.read_text(encoding="utf-8").count("<img ")
    assert seen["broken"] == []
    assert seen["wide"] == [], f"wider than the {seen['clientWidth']}px page: {seen['wide']}"
    assert seen["scrollWidth"] <= seen["clientWidth"]
