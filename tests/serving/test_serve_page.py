"""The page at `/` of `hf-seq2seq serve` in a real browser: headless Chromium from Debian's packages (installed here
when absent), driven by Selenium through Debian's chromedriver. Type a sentence, submit: the translation, the n-best
list and a heatmap with one row per target token (``</s>`` included) and one column per source token appear; the
layer and head pickers redraw it; a screenshot is saved in the test's temp dir (and, with
HF_SEQ2SEQ_PAGE_SCREENSHOT=path, there too: docs/serving_page.png is made that way)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from _serving import build_models, request, server_thread

pytest.importorskip("fastapi")
selenium = pytest.importorskip("selenium")

pytestmark = pytest.mark.slow  # a headless browser against a real server
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1100",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium and chromium-driver, installed with apt when missing (a fresh CI machine)."""
    if CHROMIUM.exists() and DRIVER.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.skip("headless Chromium is not installed and apt-get (as root) is not available to install it")
    # pytest-xdist workers may get here together: one installs, the others wait on the lock, then find it there
    with open(Path(tempfile.gettempdir()) / "hf_seq2seq_chromium_install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (CHROMIUM.exists() and DRIVER.exists()):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            wait = ["-o", "DPkg::Lock::Timeout=600"]
            subprocess.run(
                [apt, *wait, "update", "-q"], check=False, capture_output=True, env=env, timeout=900
            )
            result = subprocess.run(
                [apt, *wait, "install", "-y", "-q", "chromium", "chromium-driver"], capture_output=True, text=True,
                env=env, timeout=1200,
            )  # fmt: skip
            assert result.returncode == 0, (
                f"apt-get install chromium chromium-driver failed: {result.stderr[-2000:]}"
            )
    return CHROMIUM


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    from hf_seq2seq.serving import ModelSpec, ServerSettings, create_app, load_served_model

    folders = build_models(tmp_path_factory.mktemp("page"), exports=False)
    models = [load_served_model(ModelSpec(name, str(path))) for name, path in folders.items()]
    with server_thread(create_app(models, ServerSettings())) as url:
        yield url


@pytest.fixture()
def browser(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("model", ["de-en", "rnn"])
def test_page_translates_and_draws_the_attention_heatmap(page_url, browser, tmp_path, model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    sentence = "drei und zwanzig"
    browser.get(page_url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    browser.find_element(By.ID, "source").send_keys(sentence)
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap-table tbody tr"))

    expected = request(
        page_url + "/v1/translate",
        {"model": model, "segments": [sentence], "num_beams": 4, "n_best": 3, "return_attention": True},
    )[2]["results"][0]
    assert browser.find_element(By.ID, "translation").text == expected["hypotheses"][0]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hypotheses li")) == len(expected["hypotheses"])
    rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap-table tbody tr")
    attention = expected["attention"]
    assert len(rows) == len(attention["target_tokens"])
    cells = rows[0].find_elements(By.CSS_SELECTOR, "td.cell")
    assert len(cells) == len(attention["source_tokens"])
    shot = tmp_path / f"page_{model}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    target = os.environ.get("HF_SEQ2SEQ_PAGE_SCREENSHOT")
    if target and model == "de-en":
        shutil.copy(shot, target)
    heads = len(attention["weights"][0])
    assert len(Select(browser.find_element(By.ID, "head")).options) == heads + 1  # each head and the average
    if heads > 1:  # the Transformer: pick a layer and a head, the map is redrawn with the same shape
        Select(browser.find_element(By.ID, "layer")).select_by_index(0)
        Select(browser.find_element(By.ID, "head")).select_by_value("1")
        rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap-table tbody tr")
        assert len(rows) == len(attention["target_tokens"])
        first = [float(c.get_attribute("title")) for c in rows[0].find_elements(By.CSS_SELECTOR, "td.cell")]
        assert first == pytest.approx(attention["weights"][0][1][0], abs=1e-3)
