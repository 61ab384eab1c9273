"""Adding AKI's tokens to a backbone's tokenizer (as the official release does)."""

from __future__ import annotations

from aki.processing.families import END_OF_CHUNK_TOKEN, IMAGE_TOKEN, PAD_TOKEN


def add_aki_tokens(tokenizer) -> int:
    """Add ``<pad>`` (when pad is missing or equals EOS), ``<image>`` and ``<|endofchunk|>``.

    Returns how many tokens were added: resize the model's embeddings by that many. Calling it
    again adds nothing.
    """
    added = 0
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        added += tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    vocab = tokenizer.get_vocab()
    missing = [t for t in (IMAGE_TOKEN, END_OF_CHUNK_TOKEN) if t not in vocab]
    if missing:
        from tokenizers import AddedToken

        added += tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    return added


__all__ = ["add_aki_tokens"]
