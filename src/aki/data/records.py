"""The training record (``Sample``) and the error a reader raises for a record it cannot use.

Readers never crash a run on bad data: they raise :class:`BadRecord`, the training loop skips the
record and counts it, and only a skip *rate* above the configured threshold stops the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from aki.processing import images as processing_images
from aki.prompts import assistant_message, qa_messages, user_message


class BadRecord(ValueError):
    """A record that cannot be turned into a training sample (corrupt image, malformed fields,
    prompt too long); ``reason`` is a short tag used for counting."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


@dataclass
class Sample:
    """One training example (docs/contracts.md): PT samples carry ``caption``, SFT ``messages``.

    ``messages`` are transformers chat messages whose user content lists ``{"type": "image"}``
    items (one per entry of ``images``, in order) and ``{"type": "text", "text": ...}`` items.
    """

    images: list[Image.Image] = field(default_factory=list)
    messages: list[dict] | None = None
    caption: str | None = None
    source: str = ""

    @property
    def is_caption(self) -> bool:
        return self.caption is not None


def load_image(src: str | Path | bytes) -> Image.Image:
    """The project's one image loader (:func:`aki.processing.load_image`: fully decoded now, so a
    broken file fails here, not inside a batch), its failures as counted skips (:class:`BadRecord`
    with reason ``missing_image``, ``image_too_large`` or ``corrupt_image``)."""
    try:
        return processing_images.load_image(src)
    except processing_images.ImageNotFoundError as err:
        raise BadRecord(str(err), "missing_image") from err
    except processing_images.ImageTooLargeError as err:
        raise BadRecord(str(err), "image_too_large") from err
    except processing_images.ImageLoadError as err:
        raise BadRecord(str(err), "corrupt_image") from err


# The chat-message builders live in aki.prompts (one definition); re-exported for the readers.
user_turn = user_message
assistant_turn = assistant_message

__all__ = ["BadRecord", "Sample", "assistant_turn", "load_image", "qa_messages", "user_turn"]
