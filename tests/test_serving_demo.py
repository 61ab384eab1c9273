"""`aki demo`: its handlers on a tiny model, and the app in a real headless browser.

The browser test drives Debian's chromium through Selenium against the Gradio app on 127.0.0.1:
upload an image, ask, wait for the streamed answer (the model's greedy answer), the causal answer
beside it and the attention panel, and save a screenshot (under the test's tmp dir, and to
``$AKI_DEMO_SCREENSHOT`` when set). `scripts/setup-browser.sh` installs the browser.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aki.serving.demo import DemoModel, conversation, reading_rule, render_panel
from aki.testing import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def demo_model():
    model, processor = tiny_model("llama", rule="mma", seed=0)
    return DemoModel(model, processor, max_new_tokens=12)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """A small scene: a red disc left of a blue square on grey."""
    size = 96
    yy, xx = np.mgrid[:size, :size]
    pixels = np.full((size, size, 3), 200, dtype=np.uint8)
    pixels[(yy - 48) ** 2 + (xx - 28) ** 2 < 18**2] = (220, 30, 30)
    pixels[30:66, 58:88] = (30, 60, 220)
    path = tmp_path_factory.mktemp("demo") / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


def _greedy(demo_model, image, messages, rule=None) -> str:
    import torch

    processor, model = demo_model.processor, demo_model.model
    batch = processor(text=[processor.apply_chat_template(messages, add_generation_prompt=True)], images=[[image]])
    with reading_rule(model, rule), torch.no_grad():
        out = model.generate(**batch, max_new_tokens=demo_model.max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_handlers_stream_answers_under_both_rules_and_draw_the_panel(demo_model, picture):
    image = demo_model.load(str(picture))
    turns = [{"question": "What is left of the square?", "mma": "", "causal": ""}]
    messages = conversation(turns, "mma")
    partials = list(demo_model.stream_answer(image, messages))
    assert partials[-1] == _greedy(demo_model, image, messages)
    assert all(b.startswith(a) for a, b in itertools.pairwise(partials))  # streamed, growing
    causal = list(demo_model.stream_answer(image, messages, rule="causal"))[-1]
    assert causal == _greedy(demo_model, image, messages, rule="causal")
    assert demo_model.model.config.attention_rule == "mma"  # restored after the causal answer
    assert demo_model.compares
    result = demo_model.attention(image, messages)
    assert "left" in result.words and result.question_share() > 0
    html, overlay, figure = render_panel(result, image, 1, result.words.index("left"))
    assert "aki-word" in html and max(overlay.size) >= 384 and figure is not None  # small pictures enlarged
    # a second turn: the image tokens still read the first question (their own prompt block)
    turns[0]["mma"] = partials[-1]
    turns.append({"question": "And the colour of the square?", "mma": "", "causal": ""})
    later = demo_model.attention(image, conversation(turns, "mma"))
    assert later.words == result.words
    with reading_rule(demo_model.model, "causal"):
        assert demo_model.model.config.attention_rule == "causal"
    assert demo_model.attention(image, messages, rule="causal").question_share() == 0.0


def test_oversized_image_is_refused_with_the_limit(tmp_path):
    model, processor = tiny_model("llama", rule="mma")
    assert not DemoModel(*tiny_model("llama", rule="causal")).compares  # nothing to compare a causal model with
    small = DemoModel(model, processor, max_image_pixels=50 * 50)
    path = tmp_path / "big.png"
    Image.new("RGB", (80, 80)).save(path)
    with pytest.raises(ValueError, match="over the limit"):
        small.load(str(path))


def _browser():
    """A headless chromium driven by Selenium, or None when the browser is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1250", f"--user-data-dir={os.environ['AKI_BROWSER_PROFILE']}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_in_a_headless_browser(demo_model, picture, tmp_path, monkeypatch):
    monkeypatch.setenv("AKI_BROWSER_PROFILE", str(tmp_path / "profile"))
    browser = _browser()
    if browser is None:
        pytest.skip("chromium/chromedriver not installed: run `bash scripts/setup-browser.sh` (as root)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from aki.serving.demo import launch

    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 2**20
    port = _free_port()
    app = launch(demo_model, port=port, block=False, max_upload_mb=1)
    question = "What is left of the blue square?"
    image = demo_model.load(str(picture))
    messages = conversation([{"question": question, "mma": "", "causal": ""}], "mma")
    want_mma = _greedy(demo_model, image, messages)
    want_causal = _greedy(demo_model, image, messages, rule="causal")
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 60)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#aki-image input[type=file]")))
        upload.send_keys(str(big))  # over --max-upload-mb: refused with a message, nothing loaded
        wait.until(lambda _: "exceed the maximum allowed size" in browser.find_element(By.TAG_NAME, "body").text)
        assert not browser.find_elements(By.CSS_SELECTOR, "#aki-image img")
        for close in browser.find_elements(By.CSS_SELECTOR, ".toast-close"):  # dismiss the message
            close.click()
        upload = browser.find_element(By.CSS_SELECTOR, "#aki-image input[type=file]")
        upload.send_keys(str(picture))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#aki-image img")))
        time.sleep(1.0)  # the upload's change event resets the chat; let it finish before asking
        box = browser.find_element(By.CSS_SELECTOR, "#aki-question textarea")
        box.send_keys(question)
        browser.find_element(By.CSS_SELECTOR, "#aki-ask").click()

        def text_of(selector: str) -> str:
            return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, selector))

        wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, "#aki-words .aki-word")) > 0)
        wait.until(lambda _: "…" not in text_of("#aki-chat-causal") and question in text_of("#aki-chat-causal"))
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#aki-overlay img"))
        time.sleep(1.0)  # let the plot and the last stream update paint
        shot = tmp_path / "aki-demo.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("AKI_DEMO_SCREENSHOT"):
            shutil.copy(shot, os.environ["AKI_DEMO_SCREENSHOT"])
        main = text_of("#aki-chat-main")
        causal = text_of("#aki-chat-causal")
        words = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#aki-words .aki-word")]
        note = text_of("#aki-words .aki-words-note")
    finally:
        browser.quit()
        app.close()
    assert question in main and question in causal
    assert _visible(want_mma) in main.replace("\n", " ") and _visible(want_causal) in causal.replace("\n", " ")
    assert "left" in words and "blue" in words and "square?" in words
    assert "of their attention" in note
    assert shot.stat().st_size > 10_000


def _visible(text: str) -> str:
    """The longest stretch of ``text`` a browser shows verbatim (printable, single-spaced)."""
    printable = "".join(c if c.isprintable() and c != "\ufffd" else " " for c in text)
    pieces = [p for p in " ".join(printable.split()).split(" ") if p]
    return max(pieces, key=len) if pieces else ""
