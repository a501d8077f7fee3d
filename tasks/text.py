"""Text helpers that more than one app needs: what counts as the same prompt, and how
similar two texts are.

Prompts: ``normalize_text`` folds case, Unicode compatibility forms and whitespace, and
``content_hash`` (``Prompt.content_hash``) is the SHA-256 of that. A candidate's identity is
stricter and lives with the importer (``tasks.importers.rows.candidate_hash``).

Similarity: texts are split into words (lower case, punctuation and symbols as spaces) and
compared by the Jaccard similarity of their word trigrams. The QC report measures
near-identical candidates and near-duplicate prompts with it; an export drops pairs whose
two texts are too similar. Kept here, below both apps, so that neither imports the other.
"""

import unicodedata
from hashlib import sha256

# --- prompt identity -----------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """What counts as the same prompt: case, Unicode form and whitespace do not."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_hash(text: str) -> str:
    """A prompt's identity in its project (``Prompt.content_hash``): SHA-256 of
    ``normalize_text``. For prompts only; a candidate is known by ``candidate_hash``."""
    return sha256(normalize_text(text).encode("utf-8")).hexdigest()


# --- similarity ----------------------------------------------------------------------------

# Punctuation and symbols become spaces; str.translate is much faster than a regex here.
_SEPARATORS = str.maketrans(dict.fromkeys("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", " "))


def split_words(text: str) -> list[str]:
    """The words of a text, lower case, with punctuation and symbols taken as spaces."""
    return text.lower().translate(_SEPARATORS).split()


def word_trigrams(words: list[str]) -> set:
    """The word trigrams of a list of words; fewer than three words are one "trigram"."""
    if len(words) < 3:
        return {tuple(words)}
    return set(zip(words, words[1:], words[2:], strict=False))


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; two empty sets are the same (1.0)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def text_similarity(text_a: str, text_b: str) -> float:
    """The word-trigram Jaccard similarity of two texts, case and punctuation ignored."""
    return jaccard(word_trigrams(split_words(text_a)), word_trigrams(split_words(text_b)))
