"""Swagger UI in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven
by selenium) opens /docs on a real uWSGI server, runs "Try it out" on a model's predict route,
and sees the 200 and the model's own prediction; every request the page makes goes to our server.

The screenshot it takes is kept in docs/img/swagger-ui.png when UPDATE_SCREENSHOTS=1 (or when
that file is missing); otherwise it is written to the test's temporary folder only.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import joblib
import pandas as pd
import pytest

from conftest import ROOT, VENV_BIN, service_missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "docs" / "img" / "swagger-ui.png"
WAIT = 60  # seconds; Swagger UI renders in well under one here, but CI machines share two cores


@pytest.fixture
def browser(monkeypatch):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        service_missing("Debian's chromium and chromium-driver are not installed "
                        "(apt-get install -y chromium chromium-driver; .ci/run installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        service_missing("selenium is not installed (make install-dev)")
    # The driver and browser are the system's: selenium must never download one.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1800", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    # Every request the page makes is recorded, to show that none leaves this machine.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def iris(tmp_path):
    subprocess.run([str(VENV_BIN / "mlapi"), "demo", "--out", str(tmp_path)], check=True, capture_output=True)
    return tmp_path / "iris.joblib"


def test_try_it_out_on_a_predict_route_shows_the_models_prediction(browser, start_server, iris, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_server({"MODELS": f"iris={iris}", "UWSGI_PROCESSES": "1"}, args=("serve", "--server", "uwsgi"))
    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{server.url}/docs")

    # Expand POST /models/iris/predict, "Try it out" (the example from the model's card), Execute.
    path = wait.until(ready.element_to_be_clickable(
        (By.CSS_SELECTOR, '.opblock-post [data-path="/models/iris/predict"]')))
    operation = path.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock ')]")
    browser.execute_script("arguments[0].scrollIntoView()", operation)
    path.click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, "button.try-out__btn"))[0].click()
    sent = json.loads(wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, "textarea.body-param__text"))[0]
                      .get_attribute("value"))
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()
    answered = ".live-responses-table tr.response"  # the server's answer (not the header row)
    status = wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, f"{answered} td.response-col_status"))
    shown = operation.find_element(By.CSS_SELECTOR, f"{answered} td.response-col_description pre")

    assert status[0].text.strip() == "200"
    answer = json.loads(shown.text)
    model = joblib.load(iris)
    frame = pd.DataFrame(sent["instances"])[list(model.feature_names_in_)]
    assert answer["predictions"] == model.predict(frame).tolist()
    assert answer["probabilities"] == model.predict_proba(frame).tolist()

    browser.execute_script("arguments[0].scrollIntoView()", operation)
    taken = tmp_path / "swagger-ui.png"
    browser.save_screenshot(str(taken))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(taken, SCREENSHOT)

    requested = {entry["params"]["request"]["url"]
                 for entry in map(lambda e: json.loads(e["message"])["message"], browser.get_log("performance"))
                 if entry["method"] == "Network.requestWillBeSent"}
    assert f"{server.url}/openapi.json" in requested and f"{server.url}/models/iris/predict" in requested
    elsewhere = {url for url in requested if not url.startswith((server.url + "/", "data:", "blob:"))}
    assert not elsewhere, f"the page loaded from other hosts: {sorted(elsewhere)}"
