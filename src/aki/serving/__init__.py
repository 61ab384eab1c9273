"""Serving a trained model: the OpenAI-compatible server (``aki serve``) and the web demo (``aki demo``).

- :mod:`aki.serving.server`: FastAPI routes, request checks, OpenAI response and error shapes;
- :mod:`aki.serving.engine`: dynamic batching, one ``generate`` call per batch;
- :mod:`aki.serving.batching`: per-row sampling, stopping and streaming inside that call;
- :mod:`aki.serving.protocol`: the accepted request (strict pydantic models);
- :mod:`aki.serving.image_inputs`: ``image_url`` parts to images, within limits;
- :mod:`aki.serving.demo`: the Gradio app with the question-word attention panel.

FastAPI/uvicorn (``aki[serve]``) and Gradio (``aki[demo]``) are optional: import the submodules.
"""
