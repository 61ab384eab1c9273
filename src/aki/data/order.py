"""Input order of image and text (paper Sec. 3): I&T, T&I, and the DOT tandem schedule (Eq. 4)."""

from __future__ import annotations

ORDERS = ("I&T", "T&I", "dot")


def reorder_messages(messages: list[dict], order: str) -> list[dict]:
    """Put each user turn's image items before (``I&T``) or after (``T&I``) its text items;
    the order of items within each kind is kept. Returns new message dicts and content lists
    (the items themselves are shared, never modified: no deep copy per sample)."""
    if order not in ("I&T", "T&I"):
        raise ValueError(f"order must be 'I&T' or 'T&I'; got {order!r}")
    out = []
    for m in messages:
        if m.get("role") != "user" or not isinstance(m.get("content"), list):
            out.append(m)
            continue
        images = [c for c in m["content"] if c.get("type") == "image"]
        texts = [c for c in m["content"] if c.get("type") != "image"]
        out.append({**m, "content": images + texts if order == "I&T" else texts + images})
    return out


def order_at(order: str, step: int, total_steps: int) -> str:
    """The order to train step ``step`` (0-based) with: fixed for I&T/T&I; for ``dot`` the first
    half of the stage's steps in T&I, the second half in I&T (so the stage ends aligned with
    I&T inference)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}")
    if order != "dot":
        return order
    return "T&I" if step < total_steps // 2 else "I&T"
