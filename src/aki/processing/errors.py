"""Errors the processor raises for bad samples, so callers can catch and count them."""

from __future__ import annotations


class PromptTooLongError(ValueError):
    """A sample's prompt (everything before its first answer) does not fit ``max_length``.

    Prompts are never cut (a cut could split an image or drop the question); the data layer
    can catch this, skip the sample and count it. ``sample_index``, ``length`` and
    ``max_length`` say which sample and by how much.
    """

    def __init__(self, message: str, *, sample_index: int, length: int, max_length: int) -> None:
        super().__init__(message)
        self.sample_index = sample_index
        self.length = length
        self.max_length = max_length


class ImageCountError(ValueError):
    """The images given do not match the ``<image>`` markers in the text."""


__all__ = ["ImageCountError", "PromptTooLongError"]
