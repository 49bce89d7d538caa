"""The chat page (deployment/static/chat.html) end to end: a real server process on a free loopback port and a
headless Chromium driven by Selenium. The page streams the answer piece by piece, keeps the conversation and
sends all of it on the next turn, sends the API key, shows the server's 4xx errors and goes on, stops a stream.

Needs the Debian packages `chromium` and `chromium-driver` (tools/setup.sh installs them when it runs as root
with apt); without them these tests skip and say so."""

import json
import re
import shutil
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "deployment"))

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

MODEL = "smollm2-135m-instruct"
KEY = "test-key"
MAX_TOKENS = 24  # small, so each answer takes about a second on a CPU
# Records what the page sends (fetch bodies) and every length the last answer goes through while it streams.
SPY = """
window.sent = []; window.lengths = [];
const realFetch = window.fetch;
window.fetch = (url, options) => { if (options?.body) sent.push(JSON.parse(options.body)); return realFetch(url, options); };
new MutationObserver(() => { const r = [...document.querySelectorAll("#log .assistant")].pop();
                             if (r) lengths.push(r.textContent.length); })
  .observe(document.getElementById("log"), {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def server():
    from server import launch
    proc, base = launch("--api-key", KEY, "--max-tokens-limit", "64", "--embedding-model", "none")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def driver():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("the chat-page tests need Chromium: `apt-get install chromium chromium-driver` (`make setup` "
                    f"does it as root); found chromium={CHROMIUM}, chromedriver={CHROMEDRIVER}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, and containers often lack the namespaces Chromium's sandbox needs; the only
    # page loaded is ours, on 127.0.0.1.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,760"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))  # no Selenium Manager
    yield browser
    browser.quit()


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id)


def open_page(driver, base: str, key: str = KEY, max_tokens: int = MAX_TOKENS) -> None:
    """Load the page fresh, open Settings and type the key and max tokens as a user would."""
    from selenium.webdriver.common.by import By
    driver.get(base + "/")
    driver.find_element(By.TAG_NAME, "summary").click()
    set_field(driver, "max-tokens", str(max_tokens))
    set_field(driver, "api-key", key)
    driver.execute_script(SPY)


def set_field(driver, element_id: str, value: str) -> None:
    field = by_id(driver, element_id)
    field.clear()
    field.send_keys(value)


def ask(driver, text: str) -> None:
    by_id(driver, "input").send_keys(text)
    by_id(driver, "send").click()  # the click handler marks the page busy before it returns
    wait(driver, lambda d: by_id(d, "send").is_enabled(), "the answer did not finish")


def wait(driver, condition, message: str, seconds: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition, message)


def bubbles(driver, kind: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll('#log .{kind}')].map(e => e.textContent)")


def test_the_server_serves_the_page(server):
    for path in ("/", "/chat"):
        page = httpx.get(server + path)  # no key needed for the page itself, only for /v1/
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/v1/chat/completions" in page.text
        assert not re.search(r'(src|href)="(https?:)?//', page.text), "the page must not load anything from elsewhere"


def test_streams_the_answer_and_keeps_the_conversation(driver, server):
    open_page(driver, server)
    ask(driver, "What is the capital of France?")
    first = driver.execute_script("return lengths")
    ask(driver, "And of Italy?")
    answers, sent = bubbles(driver, "assistant"), driver.execute_script("return sent")
    assert len(bubbles(driver, "user")) == 2 and len(answers) == 2 and not bubbles(driver, "error")
    assert "Paris" in answers[0] and "Rome" in answers[1]  # "And of Italy?" only makes sense with the first turn
    # Streamed: the answer was on screen at several partial lengths before it was complete.
    partial = {n for n in first if 0 < n < len(answers[0])}
    assert len(partial) >= 2, f"the answer did not grow piece by piece: lengths seen {first}"
    # The second request carried the whole conversation, and the page's state is that conversation.
    conversation = [{"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": answers[0]}, {"role": "user", "content": "And of Italy?"}]
    last = sent[-1]
    assert last["messages"] == conversation and last["stream"] is True and last["max_tokens"] == MAX_TOKENS
    assert driver.execute_script("return messages") == conversation + [{"role": "assistant", "content": answers[1]}]
    # The text assembled from the stream is what the server answers without streaming (greedy decoding).
    whole = httpx.post(server + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, timeout=60,
                       json={"model": MODEL, "messages": conversation, "max_tokens": MAX_TOKENS}).json()
    assert answers[1] == whole["choices"][0]["message"]["content"]


def test_server_errors_are_shown_and_the_chat_goes_on(driver, server):
    open_page(driver, server, key="")
    by_id(driver, "input").send_keys("Hello!")
    by_id(driver, "send").click()
    wait(driver, lambda d: bubbles(d, "error"), "no error shown without the API key")
    assert "missing or wrong API key" in bubbles(driver, "error")[0]
    assert driver.execute_script("return messages") == [] and by_id(driver, "input").get_attribute("value") == "Hello!"

    set_field(driver, "api-key", KEY)
    set_field(driver, "max-tokens", "5000")  # over the server's --max-tokens-limit 64: a 400
    by_id(driver, "send").click()  # the failed message went back into the box
    wait(driver, lambda d: "5000" in " ".join(bubbles(d, "error")), "no error shown for max_tokens")
    assert "max_tokens 5000 is more than this server allows (64" in bubbles(driver, "error")[0]
    assert driver.find_element("css selector", ".error").get_attribute("role") == "alert"
    assert not bubbles(driver, "user") and not bubbles(driver, "assistant")

    set_field(driver, "max-tokens", str(MAX_TOKENS))
    by_id(driver, "send").click()
    wait(driver, lambda d: by_id(d, "send").is_enabled() and bubbles(d, "assistant"), "no answer after the errors")
    assert bubbles(driver, "assistant")[0].strip() and not bubbles(driver, "error")
    assert [m["role"] for m in driver.execute_script("return messages")] == ["user", "assistant"]


def test_stop_keeps_the_partial_answer_and_frees_the_server(driver, server):
    open_page(driver, server, max_tokens=64)
    by_id(driver, "input").send_keys("Write a long story about a dragon who learns to cook.")
    by_id(driver, "send").click()
    wait(driver, lambda d: any(bubbles(d, "assistant")), "no text streamed")
    by_id(driver, "stop").click()
    wait(driver, lambda d: by_id(d, "send").is_enabled(), "Stop did not end the request")
    partial = bubbles(driver, "assistant")[0]
    assert driver.execute_script("return document.querySelector('.assistant').hasAttribute('data-stopped')")
    assert driver.execute_script("return messages")[-1] == {"role": "assistant", "content": partial}
    deadline = time.time() + 20  # the closed stream is cancelled in the engine: nothing left running
    while (load := httpx.get(server + "/health").json())["in_flight"] and time.time() < deadline:
        time.sleep(0.05)
    assert load["in_flight"] == 0 and load["running"] == 0, json.dumps(load)

    by_id(driver, "new-chat").click()
    assert driver.execute_script("return messages") == [] and not bubbles(driver, "msg")
