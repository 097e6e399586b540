"""The built documentation opened in a real headless browser: maths typeset, images loaded, no script error.

Build the site first (``python -m sphinx -W --keep-going -b html docs docs/_build/html``, the ``docs``
extra); ``REFIMPL_DOCS_HTML`` points at another build. Without a built site or without Debian's
``chromium`` these tests skip, unless ``REFIMPL_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where
they fail instead.
"""
from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from refimpl import errata

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("REFIMPL_DOCS_HTML", ROOT / "docs" / "_build" / "html"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("REFIMPL_REQUIRE_BROWSER") == "1"

#: pages opened in the browser: every loss, the errata index, every tutorial, guides with figures, API pages
PAGES = (["index.html", "errata.html", "tutorials.html", "guide/recipes-and-claims.html", "guide/synthetic-data.html",
          "api/generated/refimpl.losses.kernel.html", "api/generated/refimpl.layers.conv2d.html",
          "api/generated/refimpl.losses._blocked.html"]
         + [f"losses/{name}.html" for name in ("margin", "preference", "kernel", "adacon")]
         + [f"tutorials/{nb.stem}.html" for nb in sorted((ROOT / "tutorials").glob("*.ipynb"))])
#: pages that must hold typeset maths
WITH_MATHS = {"tutorials/03_wsp.html", "api/generated/refimpl.losses.kernel.html",
              "api/generated/refimpl.losses._blocked.html"} | {p for p in PAGES if p.startswith("losses/")}
#: pages that must show at least one image
WITH_IMAGES = {"guide/recipes-and-claims.html", "guide/synthetic-data.html", "tutorials/03_wsp.html"}

#: run first on each page: records script errors and failed loads; once MathJax has finished, writes a report
PROBE = """<script>
window.__refimplErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__refimplErrors.push(t && t !== window ? "failed to load " + (t.src || t.href) : String(e.message));
}, true);
window.addEventListener("unhandledrejection", function (e) { window.__refimplErrors.push("rejection: " + e.reason); });
window.addEventListener("load", function () {
  var done = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
  done.then(function () {
    var report = {
      errors: window.__refimplErrors,
      mathjax: !!(window.MathJax && MathJax.startup),
      containers: document.querySelectorAll("mjx-container").length,
      tex_errors: document.querySelectorAll("mjx-merror").length,
      images: Array.prototype.map.call(document.images, function (i) {
        return {src: i.getAttribute("src").slice(0, 80), complete: i.complete, width: i.naturalWidth};
      })
    };
    var out = document.createElement("script");
    out.type = "application/json"; out.id = "refimpl-report"; out.textContent = JSON.stringify(report);
    document.body.appendChild(out);
  });
});
</script>"""


def _missing(why: str):
    (pytest.fail if REQUIRED else pytest.skip)(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A copy of the built site with the probe inserted at the top of every page under test."""
    if not (SITE / "index.html").exists():
        _missing(f"no built site at {SITE}: run python -m sphinx -W --keep-going -b html docs docs/_build/html")
    copy = tmp_path_factory.mktemp("site") / "html"
    shutil.copytree(SITE, copy)
    for page in PAGES:
        path = copy / page
        path.write_text(path.read_text().replace("<head>", "<head>" + PROBE, 1))
    return copy


class _VisibleText(html.parser.HTMLParser):
    """The text a reader sees, without scripts, styles, code and typeset maths."""

    SKIP = {"script", "style", "pre", "code", "mjx-container", "textarea"}

    def __init__(self):
        super().__init__()
        self.depth, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        self.depth += tag in self.SKIP

    def handle_endtag(self, tag):
        self.depth -= tag in self.SKIP

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def render(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran (chromium --dump-dom, offline, a fresh profile)."""
    if CHROMIUM is None:
        _missing("chromium is not installed (Debian: apt-get install chromium)")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
               "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def problems(path: Path, profile: Path, *, maths: bool = False, images: bool = False) -> list[str]:
    """What is wrong with the page at ``path`` (which holds :data:`PROBE`) once rendered; [] if nothing."""
    dom = render(path, profile)
    found = re.search(r'<script type="application/json" id="refimpl-report">(.*?)</script>', dom, re.DOTALL)
    if not found:
        return ["the page never finished loading (no report: MathJax did not finish?)"]
    report = json.loads(found.group(1))
    text = _VisibleText()
    text.feed(dom)
    visible = "".join(text.parts)
    wrong = [f"page error: {e}" for e in report["errors"]]
    wrong += [f"image not loaded: {i['src']}" for i in report["images"] if not (i["complete"] and i["width"] > 0)]
    wrong += [f"raw TeX left: {m!r}" for m in (r"\(", r"\[", "$$", r"\begin{", r"\frac") if m in visible]
    wrong += [f"{report['tex_errors']} TeX errors"] if report["tex_errors"] else []
    wrong += ["no typeset maths"] if maths and not (report["mathjax"] and report["containers"]) else []
    wrong += ["no image"] if images and not report["images"] else []
    return wrong


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_in_a_browser(site, page, tmp_path):
    assert problems(site / page, tmp_path / "profile", maths=page in WITH_MATHS, images=page in WITH_IMAGES) == []


def test_the_probe_sees_what_goes_wrong(site, tmp_path):
    """A missing image (a failed load, then not loaded), TeX that MathJax never saw, a failing script: all reported."""
    page = site / "broken.html"
    page.write_text(f"<html><head>{PROBE}</head><body><p>\\(x^2\\)</p><img src='missing.png'>"
                    "<script>undefined_function()</script></body></html>")
    found = problems(page, tmp_path / "profile", maths=True)
    assert [w.split(":")[0] for w in found] == ["page error", "page error", "image not loaded", "raw TeX left",
                                                 "no typeset maths"], found


def test_maths_is_served_by_the_site_itself():
    """MathJax from _static, nothing fetched from another host (readers may have no network)."""
    if not (SITE / "index.html").exists():
        _missing(f"no built site at {SITE}")
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").exists()
    remote = re.compile(r"""<(?:script|link|img)[^>]*(?:src|href)=["'](?:https?:)?//""")
    offenders = [str(p.relative_to(SITE)) for p in SITE.rglob("*.html") if remote.search(p.read_text())]
    assert offenders == []


def test_errata_page_lists_every_erratum_of_the_code():
    """The built errata index has one row per erratum that refimpl.errata finds, each linked to its code."""
    if not (SITE / "errata.html").exists():
        _missing(f"no built site at {SITE}")
    page = (SITE / "errata.html").read_text()
    body = page[page.index("<tbody"):page.index("</tbody>")]
    rows = re.findall(r"<tr.*?</tr>", body, re.DOTALL)
    found = errata.collect()
    assert len(rows) == len(found)
    for e in found:
        module = e.obj if e.obj in errata.modules() else e.obj.rsplit(".", 1)[0]
        target = f"module-{module}" if module == e.obj else e.obj
        link = f'href="api/generated/{module}.html#{target}"'
        assert any(link in row and e.where.strip("`") in row for row in rows), e
