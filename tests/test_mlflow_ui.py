"""The MLflow UI in a real browser: a tiny gadflow model is registered on a real `mlflow server` over HTTP, and
headless Chromium renders its model version page and its run's report artifacts. The rendered DOM must show the
threshold tag and the report files; a screenshot of each page is kept under test-artifacts/mlflow-ui/."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tasks.tracking.register import RegisterParams, register
from tests.helpers.servers import running_mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "mlflow-ui"
# headless on a box without GPU, D-Bus or internet; no motion, so tree folders are fully open when the page is drawn
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--force-prefers-reduced-motion", "--hide-scrollbars", "--window-size=1400,1000",
                  "--run-all-compositor-stages-before-draw", "--virtual-time-budget=15000"]
MIN_SCREENSHOT_BYTES = 30_000  # a blank 1400×1000 PNG is a few kB
# the tags table scrolls inside a 280 px box, which hides the threshold rows from a screenshot: a CSS-only
# extension lifts that limit (cosmetic: the assertions read the DOM, which holds every row either way)
UNCLIP_CSS = ".du-bois-light-table-body { max-height: none !important; }\n"
UNCLIP_MANIFEST = {"manifest_version": 3, "name": "unclip-tables", "version": "1",
                   "content_scripts": [{"matches": ["<all_urls>"], "css": ["unclip.css"]}]}


class _TextNodes(HTMLParser):
    """The DOM's non-blank text nodes, in document order (script and style contents left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data.strip())


def text_nodes(dom: str) -> list[str]:
    """The visible text of a dumped DOM, one entry per text node (a table cell, a file name, ...)."""
    parser = _TextNodes()
    parser.feed(dom)
    return parser.texts


def unclip_extension(work: Path) -> Path:
    """Write the table-unclipping extension to ``work``/unclip (once) and return its folder."""
    folder = work / "unclip"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(UNCLIP_MANIFEST))
        (folder / "unclip.css").write_text(UNCLIP_CSS)
    return folder


def run_chromium(args: list[str], work: Path, profile_name: str, timeout: float = 120) -> str:
    """Run headless Chromium with a new empty profile under ``work``; return its stdout, failing with its stderr tail."""
    profile = work / profile_name
    profile.mkdir(parents=True)
    extension = unclip_extension(work)
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--load-extension={extension}", f"--disable-extensions-except={extension}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"chromium {args} exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def render(url: str, screenshot: Path, work: Path) -> list[str]:
    """The rendered text of ``url`` (--dump-dom); a screenshot of it is written to ``screenshot``."""
    started = time.monotonic()
    dom = run_chromium(["--dump-dom", url], work, "dom-profile")
    screenshot.unlink(missing_ok=True)
    run_chromium([f"--screenshot={screenshot}", url], work, "screenshot-profile")
    log.info("rendered %s in %.1f s (%d DOM chars), screenshot %s", url, time.monotonic() - started, len(dom), screenshot)
    return text_nodes(dom)


def assert_screenshot(path: Path) -> None:
    """The screenshot is a PNG and big enough to be more than a blank page."""
    assert path.is_file(), f"no screenshot at {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert path.stat().st_size > MIN_SCREENSHOT_BYTES, f"{path} is only {path.stat().st_size} bytes: blank page?"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium: skipped without it, except in CI (CI=true), where its absence is a failure."""
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def served_model(chromium, chain, tmp_path_factory, monkeypatch_module):
    """The chain's tiny model registered over HTTP on a running `mlflow server`: URL, name, version, run and experiment ids."""
    from mlflow.tracking import MlflowClient

    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        monkeypatch_module.setenv("MLFLOW_TRACKING_URI", url)
        register(chain["exp"], RegisterParams(), chain["layout"])
        registered = json.loads(chain["layout"].registered.read_text())
        client = MlflowClient(url)
        version = client.get_model_version(registered["name"], registered["version"])
        yield {**registered, "url": url, "experiment_id": client.get_run(registered["run_id"]).info.experiment_id,
               "tags": version.tags}
        monkeypatch_module.delenv("MLFLOW_TRACKING_URI")


def test_model_version_page_shows_threshold_tag(served_model, tmp_path):
    """The registered version's page lists the threshold tag with the value the server holds for it."""
    threshold = served_model["tags"]["threshold"]
    page = f"{served_model['url']}/#/models/{served_model['name']}/versions/{served_model['version']}"
    shot = SHOTS / "model-version.png"
    SHOTS.mkdir(parents=True, exist_ok=True)
    texts = render(page, shot, tmp_path)
    assert f"Version {served_model['version']}" in texts, texts[:80]
    assert ("threshold", threshold) in zip(texts, texts[1:]), f"no threshold={threshold} tag row in {texts}"
    assert ("threshold_method", served_model["tags"]["threshold_method"]) in zip(texts, texts[1:]), texts
    assert_screenshot(shot)


def test_run_page_shows_report_artifacts(served_model, chain, tmp_path):
    """The run's artifact browser, opened at report/plots/roc.png, lists report/metrics.json and the plot files."""
    run_page = f"{served_model['url']}/#/experiments/{served_model['experiment_id']}/runs/{served_model['run_id']}"
    shot = SHOTS / "run-report.png"
    SHOTS.mkdir(parents=True, exist_ok=True)
    texts = render(f"{run_page}/artifacts/report/plots/roc.png", shot, tmp_path)
    assert "Artifacts" in texts and "report" in texts, texts[:80]
    assert "metrics.json" in texts, f"report/metrics.json not listed: {texts}"
    assert "plots" in texts, f"report/plots not listed: {texts}"
    for plot in sorted(p.name for p in chain["layout"].plots.glob("*.png")):
        assert plot in texts, f"report/plots/{plot} not listed: {texts}"
    assert_screenshot(shot)
