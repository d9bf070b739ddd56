"""Words for the PostgreSQL store's text search, split as SQLite's FTS5 (unicode61) splits them.

The search box means the same on both stores: every word of the text, in the notebook,
parameters, tags, kind or queue of a run; `word*` a prefix; case and accents ignored. A
word of the search text is split as the stored text is (`score_threshold` is the phrase
`score threshold`), and must appear as that phrase within one field.
"""

from __future__ import annotations

import unicodedata

#: tsvector limits: positions run to 16383, a lexeme keeps at most 256 of them, and is
#: shorter than 2 KiB.
_MAX_POSITION = 16383
_MAX_POSITIONS = 256
_MAX_TOKEN = 500


def tokens(text: str) -> list[str]:
    """The tokens of `text`: runs of letters, digits and private-use characters (FTS5's
    default categories L*, N*, Co), lower-cased, accents removed."""
    found: list[str] = []
    current: list[str] = []
    for ch in unicodedata.normalize("NFKD", text):
        category = unicodedata.category(ch)
        if category == "Mn":
            continue  # an accent, split off by NFKD: dropped, as remove_diacritics does
        if category[0] in "LN" or category == "Co":
            current.append(ch)
        elif current:
            found.append("".join(current).lower()[:_MAX_TOKEN])
            current = []
    if current:
        found.append("".join(current).lower()[:_MAX_TOKEN])
    return found


def tsvector(fields: list[str]) -> str:
    """A tsvector literal of the fields' tokens with positions; a gap between fields, so a
    phrase never runs from one field into the next."""
    positions: dict[str, list[int]] = {}
    at = 1
    for field in fields:
        for token in tokens(field):
            spots = positions.setdefault(token, [])
            if len(spots) < _MAX_POSITIONS:
                spots.append(min(at, _MAX_POSITION))
            at += 1
        at += 1
    return " ".join(f"'{token}':{','.join(map(str, spots))}" for token, spots in positions.items())


def tsquery(text: str) -> str | None:
    """A tsquery literal for a search box's text (every word, `word*` a prefix); None when
    the text holds no word (such a search matches nothing, as on SQLite)."""
    phrases = []
    for word in text.split():
        prefix = word.endswith("*")
        parts = tokens(word.rstrip("*"))
        if not parts:
            continue
        quoted = [f"'{part}'" for part in parts]
        if prefix:
            quoted[-1] += ":*"
        phrases.append("(" + " <-> ".join(quoted) + ")")
    return " & ".join(phrases) if phrases else None
