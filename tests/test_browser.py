"""The MLflow UI, as a person sees it: a real headless chromium (Debian's, driven by Selenium through
/usr/bin/chromedriver) opens the experiment page of a finished search served by a real `mlflow server`
and finds every trial run listed under the search's run.

Marked `browser`; skipped where chromium is not installed, a failure under CI=true (`.ci/run` installs
it: `apt-get install chromium chromium-driver`)."""

import json
import os
import urllib.request

import pytest
from conftest import require

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="session", autouse=True)
def _needs_chromium():  # session scope: checked before the search and server fixtures start
    require(
        os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK),
        f"{CHROMIUM} / {CHROMEDRIVER} not installed: apt-get install chromium chromium-driver",
    )


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")), options=options
    )
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_mlflow_ui_lists_every_trial_run_of_the_search(finished_search, served_search, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    result = finished_search.result
    api = f"{served_search}/api/2.0/mlflow"
    with urllib.request.urlopen(f"{api}/experiments/get-by-name?experiment_name={finished_search.study_name}") as r:
        experiment_id = json.load(r)["experiment"]["experiment_id"]
    trials = {t.number: t.user_attrs["mlflow_run_id"] for t in result.study.trials}

    def body() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def link(run_id: str):
        found = browser.find_elements(By.CSS_SELECTOR, f'a[href$="/runs/{run_id}"]')
        return found[0] if found else None

    try:
        # MLflow 3 opens experiments on its GenAI view; the runs table is the "model training" one
        browser.get(f"{served_search}/#/experiments/{experiment_id}/runs")
        WebDriverWait(browser, 90).until(lambda d: link(result.mlflow_run_id) is not None)
        assert f"{1 + len(trials)} matching runs" in body()
        assert link(result.mlflow_run_id).text == finished_search.study_name
        # the trials are nested under the search's run: expand it as a user would
        parent_cell = link(result.mlflow_run_id).find_element(By.XPATH, "ancestor::*[@role='gridcell'][1]")
        parent_cell.find_element(By.TAG_NAME, "button").click()
        WebDriverWait(browser, 60).until(lambda d: all(link(run_id) is not None for run_id in trials.values()))
        for number, run_id in trials.items():
            assert link(run_id).text == f"trial-{number:03d}"
        text = body()
        assert all(f"trial-{n:03d}" in text for n in trials)
    except Exception:
        browser.save_screenshot(str(tmp_path / "mlflow-ui.png"))  # kept under pytest's tmp dir
        raise
