"""Processing: images, chat templates, tiny tokenizers and ``AkiProcessor``.

``AkiProcessor`` turns prompts/conversations/captions plus images into model inputs whose
``segments`` (``aki.masks.Segment`` per token) come from the chat template's structure.
"""

from aki.processing.chat_templates import (
    CAPTION_FORMATS,
    CHAT_TEMPLATES,
    DEFAULT_SYSTEM_PROMPT,
    caption_text,
    get_chat_template,
    render_chat,
    validate_messages,
)
from aki.processing.errors import ImageCountError, PromptTooLongError
from aki.processing.families import (
    END_OF_CHUNK_TOKEN,
    FAMILIES,
    IMAGE_TOKEN,
    PAD_TOKEN,
    detect_family,
    normalize_family,
)
from aki.processing.images import AkiImageProcessor, ImageLoadError, load_image, to_rgb
from aki.processing.processor import IGNORE_INDEX, AkiProcessor
from aki.processing.segmenter import TemplateStructure, TemplateStructureError
from aki.processing.tiny_tokenizer import BUILTIN_CORPUS, build_tiny_tokenizer
from aki.processing.vocab import add_aki_tokens

__all__ = [
    "BUILTIN_CORPUS",
    "CAPTION_FORMATS",
    "CHAT_TEMPLATES",
    "DEFAULT_SYSTEM_PROMPT",
    "END_OF_CHUNK_TOKEN",
    "FAMILIES",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "AkiImageProcessor",
    "AkiProcessor",
    "ImageCountError",
    "ImageLoadError",
    "PromptTooLongError",
    "TemplateStructure",
    "TemplateStructureError",
    "add_aki_tokens",
    "build_tiny_tokenizer",
    "caption_text",
    "detect_family",
    "get_chat_template",
    "load_image",
    "normalize_family",
    "render_chat",
    "to_rgb",
    "validate_messages",
]
