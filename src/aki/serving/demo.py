"""``aki demo``: chat about an image in the browser, and see which question words the image tokens read.

A Gradio app (the official release's demo stack) around one loaded model:

- multi-turn chat about an uploaded image, answers streamed token by token (transformers'
  ``TextIteratorStreamer`` over ``model.generate``);
- beside the answer, what no other demo shows: which words of the question the image tokens
  attended to (:mod:`aki.analysis.question_words`), as shaded words and a layers x words heatmap,
  with a layer selector (one layer or the mean), and over the picture through the resampler
  (optionally for one selected word);
- for a model whose rule lets image tokens read the question (MMA), the same conversation
  answered side by side under causal attention: the same weights, only the prompt's mask
  changes (``config.set_rule("causal")`` for that call).

One lock serialises every use of the model (generation and the attention pass switch the model's
rule or attention implementation for their duration). The image goes through
:func:`aki.processing.load_image` with the pixel limit; uploads are bounded by Gradio's
``max_file_size``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aki.analysis.question_words import (
    QuestionWordAttention,
    layer_word_figure,
    overlay_heatmap,
    question_word_attention,
    word_heatmap_html,
)
from aki.prompts import assistant_message, user_message

MEAN = -1
ALL_WORDS = -1

CSS = """
.aki-panel .aki-words span { font-size: 1.05em; }
footer { display: none !important; }
"""


@contextmanager
def reading_rule(model, rule: str | None, options: dict | None = None):
    """Read prompts under ``rule`` for the duration (None: the model's own rule)."""
    if rule is None:
        yield
        return
    saved = (model.config.attention_rule, dict(model.config.rule_options or {}))
    model.config.set_rule(rule, options or {})
    try:
        yield
    finally:
        model.config.set_rule(*saved)


def conversation(turns: list[dict[str, str]], side: str) -> list[dict]:
    """The chat messages of ``turns`` as ``side`` ("mma" or "causal") saw them: the image with
    the first question, that side's earlier answers, and the last question left to answer."""
    messages: list[dict] = []
    for k, turn in enumerate(turns):
        messages.append(user_message(turn["question"], n_images=1 if k == 0 else 0))
        if k < len(turns) - 1:
            messages.append(assistant_message(turn[side]))
    return messages


class DemoModel:
    """The model, its processor and the lock that serialises them; what the app's handlers call."""

    def __init__(self, model, processor, *, max_new_tokens: int = 128, max_image_pixels: int = 40_000_000) -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = int(max_new_tokens)
        self.max_image_pixels = int(max_image_pixels)
        self.lock = threading.Lock()
        rule = model.config.rule
        self.compares = not rule.is_causal(**rule.check_options(model.config.rule_options))
        """Whether image tokens read the question under the model's rule (then causal is shown beside it)."""

    def load(self, path: str):
        from aki.processing import load_image

        return load_image(path, max_pixels=self.max_image_pixels)

    def stream_answer(self, image, messages: list[dict], rule: str | None = None) -> Iterator[str]:
        """The answer so far, after every new piece of text (greedy, as in the paper's evaluation)."""
        import torch
        from transformers import TextIteratorStreamer

        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        batch = self.processor(text=[prompt], images=[[image]], return_tensors="pt")
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=300)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                        streamer=streamer)
            except BaseException as err:  # surfaced to the browser below
                failure.append(err)
                streamer.end()

        with self.lock, reading_rule(self.model, rule):
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            text = ""
            for piece in streamer:
                text += piece
                yield text
            worker.join()
        if failure:
            raise RuntimeError(f"generation failed: {failure[0]}") from failure[0]
        yield text

    def attention(self, image, messages: list[dict], rule: str | None = None) -> QuestionWordAttention:
        with self.lock, reading_rule(self.model, rule):
            return question_word_attention(self.model, self.processor, [image], messages=messages)


def _layer(choice: Any) -> int | None:
    return None if choice in (None, MEAN) else int(choice)


def _word(choice: Any) -> int | None:
    return None if choice in (None, ALL_WORDS) else int(choice)


def render_panel(result: QuestionWordAttention | None, image, layer_choice: Any, word_choice: Any,
                 turns: int = 1) -> tuple[str, Any, Any]:
    """``(words html, image overlay, layers x words figure)`` for the selected layer and word."""
    if result is None:
        return "<p>Ask a question to see which of its words the image tokens read.</p>", None, None
    layer, word = _layer(layer_choice), _word(word_choice)
    html = word_heatmap_html(result, layer, word=word)
    if turns > 1:
        html += ("<p style='font-size: 0.85em; opacity: 0.8;'>These are the words of the question asked with the "
                 "image: the image tokens read their own prompt block; later turns come after it.</p>")
    overlay = overlay_heatmap(_display(image), result.image_heatmap(layer, word)) if image is not None else None
    return html, overlay, layer_word_figure(result)


def _display(image, side: int = 384):
    """``image`` scaled so its longer side is at least ``side`` pixels (small pictures stay visible)."""
    longest = max(image.size)
    if longest >= side:
        return image
    factor = side / longest
    return image.resize((round(image.width * factor), round(image.height * factor)))


def build_demo(demo_model: DemoModel, *, title: str = "AKI demo"):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    n_layers = demo_model.model.config.get_text_config().num_hidden_layers
    layer_choices = [("mean of all layers", MEAN)] + [(f"layer {k}", k) for k in range(n_layers)]
    rule = demo_model.model.config.attention_rule

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"## {title}\nUpload an image and ask about it. The model reads the prompt with **{rule}** "
            "attention" + (": its image tokens can also read the question. The right column answers the same "
                           "conversation under plain **causal** attention (same weights)." if demo_model.compares
                           else ".")
        )
        turns = gr.State([])
        result_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                image = gr.Image(type="filepath", label="Image", height=260, elem_id="aki-image")
                question = gr.Textbox(label="Question", placeholder="What is in the image?", lines=2,
                                      elem_id="aki-question")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="aki-ask")
                    clear = gr.Button("Clear", elem_id="aki-clear")
            with gr.Column(scale=3):
                with gr.Row():
                    chat_main = gr.Chatbot(label=f"{rule} (as trained)", height=300, elem_id="aki-chat-main",
                                           feedback_options=None)
                    chat_causal = gr.Chatbot(label="causal (same weights)", height=300, elem_id="aki-chat-causal",
                                             feedback_options=None, visible=demo_model.compares)
                with gr.Group(elem_classes=["aki-panel"]), gr.Column():
                    gr.Markdown("### What the image tokens read\nEach word is shaded by the share of the image "
                                "tokens' attention it receives; the picture shows where those image tokens "
                                "come from (through the resampler).")
                    with gr.Row():
                        layer = gr.Dropdown(layer_choices, value=MEAN, label="Decoder layer", elem_id="aki-layer")
                        word = gr.Dropdown([("all question words", ALL_WORDS)], value=ALL_WORDS,
                                           label="Image heatmap for", elem_id="aki-word")
                    with gr.Row():
                        with gr.Column(scale=2):
                            words_html = gr.HTML(render_panel(None, None, MEAN, ALL_WORDS)[0], elem_id="aki-words")
                            plot = gr.Plot(label="Words x layers", elem_id="aki-plot")
                        overlay = gr.Image(label="Question attention over the image", height=300, scale=1,
                                           interactive=False, elem_id="aki-overlay")

        def chats(history: list[dict]) -> tuple[list, list]:
            main, causal = [], []
            for turn in history:
                main += [{"role": "user", "content": turn["question"]},
                         {"role": "assistant", "content": turn["mma"] or "…"}]
                causal += [{"role": "user", "content": turn["question"]},
                           {"role": "assistant", "content": turn["causal"] or "…"}]
            return main, causal

        def respond(image_path, text, history, layer_choice):
            if not image_path:
                raise gr.Error("Upload an image first.")
            text = (text or "").strip()
            if not text:
                raise gr.Error("Type a question.")
            try:
                picture = demo_model.load(image_path)
            except ValueError as err:
                raise gr.Error(str(err)) from None
            history = [*history, {"question": text, "mma": "", "causal": ""}]
            skip = gr.skip()
            yield (*chats(history), "", history, skip, skip, skip, skip, skip)
            for partial in demo_model.stream_answer(picture, conversation(history, "mma")):
                history[-1]["mma"] = partial
                yield (*chats(history), skip, history, skip, skip, skip, skip, skip)
            result = demo_model.attention(picture, conversation(history, "mma"))
            html, over, fig = render_panel(result, picture, layer_choice, ALL_WORDS, len(history))
            words = gr.update(choices=[("all question words", ALL_WORDS)]
                              + [(f"{k}: {w}", k) for k, w in enumerate(result.words)], value=ALL_WORDS)
            yield (*chats(history), skip, history, result, html, over, fig, words)
            if demo_model.compares:
                for partial in demo_model.stream_answer(picture, conversation(history, "causal"), rule="causal"):
                    history[-1]["causal"] = partial
                    yield (*chats(history), skip, history, skip, skip, skip, skip, skip)

        def redraw(image_path, result, layer_choice, word_choice, history):
            if result is None or not image_path:
                return render_panel(None, None, MEAN, ALL_WORDS)
            return render_panel(result, demo_model.load(image_path), layer_choice, word_choice, len(history))

        def reset():
            html = render_panel(None, None, MEAN, ALL_WORDS)[0]
            return [], [], [], None, html, None, None, gr.update(choices=[("all question words", ALL_WORDS)],
                                                                   value=ALL_WORDS)

        outputs = [chat_main, chat_causal, question, turns, result_state, words_html, overlay, plot, word]
        ask.click(respond, [image, question, turns, layer], outputs)
        question.submit(respond, [image, question, turns, layer], outputs)
        for control in (layer, word):
            control.change(redraw, [image, result_state, layer, word, turns], [words_html, overlay, plot])
        reset_outputs = [chat_main, chat_causal, turns, result_state, words_html, overlay, plot, word]
        clear.click(reset, None, reset_outputs)
        image.change(reset, None, reset_outputs)
    return demo


def theme():
    """Gradio's default look with system fonts (the default theme fetches web fonts; the demo must
    work offline)."""
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


def launch(demo_model: DemoModel, *, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = 10.0,
           block: bool = True, title: str = "AKI demo"):
    """Build and launch the app; returns it (``block=False`` returns at once, for tests)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_demo(demo_model, title=title)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, max_file_size=int(max_upload_mb * 2**20), share=False,
               inbrowser=False, show_error=True, quiet=not block, prevent_thread_lock=not block,
               theme=theme(), css=CSS, ssr_mode=False)
    return app


__all__ = ["DemoModel", "build_demo", "conversation", "launch", "reading_rule", "render_panel"]
