"""The web console in a real browser: Debian's chromium, headless, through its chromedriver,
against ``popbox serve`` with two workers.

Log in, add a user, open a message delivered over LMTP (its HTML part sandboxed), kick a
live poplib session, watch a protocol line appear live.  Screenshots of every step go to
``$POPBOX_TEST_ARTIFACTS`` (or a folder under pytest's tmp path).  Nothing downloads a
browser or a driver: both paths are given, Selenium Manager is made to fail the test if
it is ever asked, and the browser resolves no host name but 127.0.0.1.
"""

from __future__ import annotations

import os
import poplib
import select
import shutil
import smtplib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from popbox_servers import ServeProcess, config_mapping, make_tls_files, provision, toml_text

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60.0  # seconds a page may take on a loaded machine (under coverage, too)
POP_TIMEOUT = 15.0
ROOT_PASSWORD = "console root pw"
USERS = {"root": ROOT_PASSWORD, "alice": "alice pw", "bob": "bob pw"}
HTML_MAIL = (
    b"From: sender@example.com\r\nTo: alice@example.com\r\n"
    b"Subject: <b>Quarterly</b> report\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="xx"\r\n\r\n'
    b"--xx\r\nContent-Type: text/plain\r\n\r\nThe plain report.\r\n"
    b"--xx\r\nContent-Type: text/html\r\n\r\n"
    b"<p id=greeting>Hello from HTML</p>"
    b"<script>document.body.textContent='PWNED'</script>\r\n--xx--\r\n"
)


@dataclass
class Node:
    process: ServeProcess
    url: str  # the console's origin, http://127.0.0.1:PORT
    pop3_port: int
    lmtp_port: int


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("console")
    tls = make_tls_files(base / "tls")
    data_dir = base / "data"
    provision(data_dir, USERS, {"alice": [b"Subject: first\r\n\r\nhello\r\n"]})
    mapping = config_mapping(
        data_dir,
        tls,
        {"login_type": "plaintext_login"},
        {"server": {"workers": 2}, "admin": {"listen": ["127.0.0.1:0"], "users": ["root"]}},
    )
    config = base / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    process = ServeProcess(["serve", "--config", str(config)], cwd=base, stderr_path=base / "err")
    try:
        process.wait_for_listeners({"pop3", "lmtp", "admin"}, timeout=60)
        yield Node(
            process,
            f"http://127.0.0.1:{process.port('admin')}",
            process.port("pop3"),
            process.port("lmtp"),
        )
    finally:
        process.terminate()
        process.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("POPBOX_TEST_ARTIFACTS")
    folder = Path(chosen) / "console" if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed: run scripts/setup (CI installs it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        # Any host name but loopback fails to resolve: nothing reaches the network.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_AVOID_BROWSER_DOWNLOAD", "true")
        patch.setenv("SE_OFFLINE", "true")

        def refuse(*_args: object) -> dict[str, str]:
            raise AssertionError("Selenium Manager was asked for a browser or driver")

        patch.setattr(SeleniumManager, "binary_paths", refuse)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(browser: webdriver.Chrome) -> WebDriverWait:
    return WebDriverWait(browser, WAIT)


def _shot(browser: webdriver.Chrome, artifacts: Path, name: str) -> None:
    assert browser.save_screenshot(str(artifacts / f"{name}.png"))


def _notice(browser: webdriver.Chrome) -> str:
    return _wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".notice"))).text


def _pop(node: Node, user: str) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", node.pop3_port, timeout=POP_TIMEOUT)
    try:
        client.user(user)
        client.pass_(USERS.get(user, "new user pw"))
    except BaseException:
        client.close()
        raise
    return client


def _own_resources_only(browser: webdriver.Chrome, origin: str) -> None:
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(name.startswith(origin + "/") for name in loaded), loaded


def _no_console_errors(browser: webdriver.Chrome) -> None:
    """No CSP violation, no failed asset, no script error on the page."""
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_1_log_in_and_see_the_dashboard(node, browser, artifacts):
    browser.get(node.url + "/console")
    _wait(browser).until(ec.url_contains("/console/login"))
    browser.find_element(By.NAME, "name").send_keys("root")
    browser.find_element(By.NAME, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = _wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".error")))
    assert "wrong name or password" in error.text
    browser.get_log("browser")  # the 401 of the refused login is logged: not an error here
    browser.find_element(By.NAME, "name").send_keys("root")
    browser.find_element(By.NAME, "password").send_keys(ROOT_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(browser).until(ec.title_contains("Dashboard"))
    assert browser.find_element(By.CSS_SELECTOR, ".me").text == "root"
    assert browser.find_element(By.CSS_SELECTOR, "figure.chart svg").is_displayed()
    cookie = browser.get_cookie("popbox_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: not for scripts
    _own_resources_only(browser, node.url)
    _no_console_errors(browser)
    _shot(browser, artifacts, "1-dashboard")


def test_2_add_a_user_who_can_then_log_in_over_pop3(node, browser, artifacts):
    browser.get(node.url + "/console/users")
    form = browser.find_element(By.CSS_SELECTOR, "form.add")
    form.find_element(By.NAME, "name").send_keys("carol")
    form.find_element(By.NAME, "password").send_keys("new user pw")
    form.find_element(By.NAME, "quota_mib").send_keys("5")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert _notice(browser) == "user carol added"
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-user=carol]")
    assert "of 5.0 MiB" in row.text
    assert row.find_element(By.TAG_NAME, "meter").get_attribute("max") == str(5 * 1024 * 1024)
    _no_console_errors(browser)
    _shot(browser, artifacts, "2-users")
    _pop(node, "carol").quit()


def test_3_open_a_message_delivered_over_lmtp(node, browser, artifacts):
    with smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=POP_TIMEOUT) as lmtp:
        lmtp.sendmail("sender@example.com", ["alice"], HTML_MAIL)
    browser.get(node.url + "/console/users")
    browser.find_element(By.LINK_TEXT, "alice").click()
    _wait(browser).until(ec.title_contains("alice"))
    links = browser.find_elements(By.CSS_SELECTOR, "table.messages tbody a")
    assert len(links) == 2
    links[-1].click()
    _wait(browser).until(ec.title_contains("Message"))
    headers = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.headers tr")
    }
    assert headers["Subject"] == "<b>Quarterly</b> report"  # shown as text, not markup
    assert browser.find_elements(By.CSS_SELECTOR, "table.headers b") == []
    assert browser.find_element(By.CSS_SELECTOR, "pre.text-part").text == "The plain report."
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.html-part")
    assert frame.get_attribute("sandbox") == ""  # sandboxed, nothing allowed
    browser.switch_to.frame(frame)
    try:
        greeting = _wait(browser).until(ec.presence_of_element_located((By.ID, "greeting")))
        assert greeting.text == "Hello from HTML"
        assert "PWNED" not in browser.find_element(By.TAG_NAME, "body").text  # no script ran
    finally:
        browser.switch_to.default_content()
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - the property raises when there is none
    _shot(browser, artifacts, "3-message")
    browser.find_element(By.LINK_TEXT, "Raw source").click()
    _wait(browser).until(ec.url_contains("/raw"))
    assert "Subject: <b>Quarterly</b> report" in browser.find_element(By.TAG_NAME, "body").text


def test_4_kick_a_live_poplib_session(node, browser, artifacts):
    client = _pop(node, "alice")
    try:
        client.stat()
        browser.get(node.url + "/console/sessions?user=alice")
        row = _wait(browser).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "tr[data-session]"))
        )
        assert "alice" in row.text
        _shot(browser, artifacts, "4-sessions")
        row.find_element(By.CSS_SELECTOR, "button.kick").click()
        assert _notice(browser).endswith("closed")
        readable, _, _ = select.select([client.sock], [], [], POP_TIMEOUT)
        assert readable, "the kicked session was not closed"
        assert client.file.readline().startswith(b"-ERR session closed by an administrator")
        assert client.file.readline() == b""  # then the end of the connection
    finally:
        client.close()


def test_5_watch_a_protocol_line_appear_live(node, browser, artifacts):
    browser.get(node.url + "/console/users/bob/log")
    state = browser.find_element(By.ID, "log-state")
    _wait(browser).until(lambda _: state.text.startswith("Watching"))

    def noop_lines(b: webdriver.Chrome) -> list:
        return b.find_elements(By.XPATH, "//ol[@id='log']/li[contains(., 'NOOP')]")

    found = []
    # The workers learn whom to watch over the control channel: a session that logs in
    # before that is not watched, so sessions are made until a line has arrived.
    for _ in range(10):
        client = _pop(node, "bob")
        client.noop()
        client.quit()
        try:
            found = WebDriverWait(browser, WAIT / 10).until(noop_lines)
            break
        except TimeoutException:
            continue
    assert found, "no NOOP line appeared in the live log"
    assert "C: NOOP" in found[0].text
    lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#log li")]
    assert not any("bob pw" in line for line in lines)  # never the password
    _no_console_errors(browser)
    _shot(browser, artifacts, "5-protocol-log")


def test_6_the_dashboard_counts_what_happened(node, browser, artifacts):
    browser.get(node.url + "/console")
    _wait(browser).until(ec.title_contains("Dashboard"))
    cards = {
        card.find_element(By.CSS_SELECTOR, ".label").text: card.find_element(
            By.CSS_SELECTOR, ".value"
        ).text
        for card in browser.find_elements(By.CSS_SELECTOR, ".card")
    }
    logins, failures = cards["logins / failures since start"].split(" / ")
    assert int(logins) >= 3  # carol, alice and bob over POP3
    assert int(failures) == 0
    deliveries = next(value for label, value in cards.items() if label.startswith("deliveries"))
    assert int(deliveries) >= 1  # the LMTP delivery of test 3
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart circle")  # the latest points
    _no_console_errors(browser)
    _shot(browser, artifacts, "6-dashboard-after")
