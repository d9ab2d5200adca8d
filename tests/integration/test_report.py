"""The Snakemake report of a quantum workflow, rendered in headless Chromium.

The report is a JavaScript app that embeds the plots as data URIs and shows one when
it is clicked. A small driver script appended to a copy of the report clicks through
to a plot the way a user would (the result category, then the plot's view button and
its information button); we then check the DOM after the scripts ran, and a screenshot.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, clean_env, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PROFILE = REPO / "profiles" / "local"
SMALL = "sampler_shots: 1000\nestimator_points: 5\n"
PLOTS = {  # report output: a phrase of its caption
    "results/plots/sampler.png": "For the Bell pair: 00 and 11, about half each.",
    "results/plots/estimator.png": "one QRMI payload",
    "results/plots/quantum_timeline.png": "Every quantum task of this run, one bar each",
    "results/plots/quantum_task_times.png": "Task time per rule, from submission to result",
}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

DRIVER = """
<script>
(function () {
  const target = decodeURIComponent(location.hash.slice(1));
  const status = document.createElement("pre");
  status.id = "driver-status";
  const say = (text) => { status.textContent = text; document.body.appendChild(status); };
  const byText = (text) => [...document.querySelectorAll("nav a")].find((a) => a.textContent.trim() === text);
  const category = Object.keys(categories).find((c) => Object.values(categories[c]).some((files) => files.includes(target)));
  let steps = 0;
  function step() {
    if (++steps > 50) return say("gave up: " + target + " not reachable");
    const shown = document.querySelector('#app img[src^="data:image/png"]');
    const row = [...document.querySelectorAll("nav tr")].find((tr) => tr.querySelector("td") && tr.querySelector("td").textContent.trim() === target);
    if (shown && row) {
      row.querySelector('a[iconname="information-circle"]').click();
      return setTimeout(() => say("shown " + target), 200);
    }
    if (row) row.querySelector('a[iconname="eye"]').click();
    else (byText(category) || byText("Results") || { click() {} }).click();
    setTimeout(step, 200);
  }
  setTimeout(step, 200);
})();
</script>
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium, installed from Debian when missing and we are root."""
    found = shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _unavailable("chromium is not installed (as root: apt-get install -y --no-install-recommends chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # a stale package list: update once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not shutil.which("chromium"):
        _unavailable(f"chromium is missing and could not be installed: {(done.stderr or done.stdout).strip()[-300:]}")
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The primitives workflow, run small, and its report.html."""
    base = tmp_path_factory.mktemp("report")
    shutil.copytree(REPO / "circuits", base / "circuits")
    workdir = base / "workflows" / "primitives"
    shutil.copytree(REPO / "workflows" / "primitives", workdir,
                    ignore=shutil.ignore_patterns(".snakemake", "payloads", "results", "report*.html"))
    (workdir / "small.yaml").write_text(SMALL)
    ran = snakemake(workdir, "--profile", str(PROFILE), "--configfile", "small.yaml", timeout=300)
    assert ran.returncode == 0, ran.stderr[-4000:]
    made = snakemake(workdir, "--report", "report.html", "--configfile", "small.yaml", timeout=120)
    assert made.returncode == 0, made.stderr[-4000:]
    return workdir / "report.html"


def render(chromium: str, page: Path, profile: Path, *args: str, fragment: str = "") -> str:
    """Load ``page`` in headless Chromium, let its scripts run, and return stdout."""
    url = page.as_uri() + (f"#{fragment}" if fragment else "")
    done = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=8000", *args, url],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def rendered_part(dom: str) -> str:
    """The DOM without script and style elements: what the page shows, not the data it carries."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)


def driven_copy(report: Path) -> Path:
    html = report.read_text()
    end = html.rfind("</body>")
    page = report.with_name("driven.html")
    page.write_text(html[:end] + DRIVER + html[end:])
    return page


def test_report_app_renders_its_menu_and_rule_graph(chromium: str, report: Path, tmp_path: Path) -> None:
    shown = rendered_part(render(chromium, report, tmp_path / "profile", "--dump-dom"))
    app = shown[shown.index('<div id="app">'):]
    assert "Snakemake" in app and ">Results<" in app, "the app did not render its menu"
    assert 'id="rulegraph"' in app and "<canvas" in app, "the rule graph was not drawn"
    assert 'id="loading-screen" style="display: none;"' in shown


@pytest.mark.parametrize("plot", list(PLOTS))
def test_each_plot_is_shown_with_its_caption(chromium: str, report: Path, tmp_path: Path, plot: str) -> None:
    page = driven_copy(report)
    shown = rendered_part(render(chromium, page, tmp_path / "profile", "--dump-dom", fragment=plot))
    assert f'<pre id="driver-status">shown {plot}</pre>' in shown
    images = re.findall(r'<img src="data:image/png;[^"]*base64,([^"]+)"', shown)
    assert len(images) == 1, "exactly the one plot is displayed"
    assert base64.b64decode(images[0]) == (report.parent / plot).read_bytes(), "the displayed image is the plot file"
    assert PLOTS[plot] in " ".join(re.sub(r"<[^>]+>", " ", shown).split()), "the caption is shown"


def test_screenshot_of_a_shown_plot_is_not_blank(chromium: str, report: Path, tmp_path: Path) -> None:
    import matplotlib.image

    page = driven_copy(report)
    shot = tmp_path / "shot.png"
    render(chromium, page, tmp_path / "profile", "--window-size=1280,900", f"--screenshot={shot}",
           fragment="results/plots/sampler.png")
    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (900, 1280)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 100, f"only {colours} colours: a blank or unstyled page"
    # The sampler plot's bars (#fc8d62 sampled, #8da0cb exact) fill a good part of the view.
    for bar in ((0xFC, 0x8D, 0x62), (0x8D, 0xA0, 0xCB)):
        share = (np.abs(pixels - bar).max(axis=-1) <= 8).mean()
        assert share > 0.01, f"bar colour {bar} covers only {share:.2%} of the screenshot"
