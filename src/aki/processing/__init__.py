"""Processing: images, chat templates, tiny tokenizers and ``AkiProcessor``.

``AkiProcessor`` (a transformers ``ProcessorMixin``) turns prompts/conversations/captions plus
images into model inputs whose ``segments`` (``aki.masks.Segment`` per token) come from the chat
template's structure. ``load_image`` is the one image-loading path of the project. Importing
this package registers ``AkiProcessor`` with ``AutoProcessor``.
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
from aki.processing.images import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    ImageLoadError,
    ImageNotFoundError,
    ImageTooLargeError,
    load_image,
    to_rgb,
    tower_rgb,
)
from aki.processing.processor import (
    IGNORE_INDEX,
    AkiImageProcessor,
    AkiProcessor,
    register_auto_processor,
    siglip_image_processor,
)
from aki.processing.segmenter import TemplateStructure, TemplateStructureError
from aki.processing.tiny_tokenizer import BUILTIN_CORPUS, build_tiny_tokenizer
from aki.processing.vocab import add_aki_tokens

__all__ = [
    "BUILTIN_CORPUS",
    "CAPTION_FORMATS",
    "CHAT_TEMPLATES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SYSTEM_PROMPT",
    "END_OF_CHUNK_TOKEN",
    "FAMILIES",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "MAX_PIXELS_ENV",
    "PAD_TOKEN",
    "AkiImageProcessor",
    "AkiProcessor",
    "ImageCountError",
    "ImageLoadError",
    "ImageNotFoundError",
    "ImageTooLargeError",
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
    "register_auto_processor",
    "render_chat",
    "siglip_image_processor",
    "to_rgb",
    "tower_rgb",
    "validate_messages",
]

register_auto_processor()  # last: every name above is bound before aki.model is imported
