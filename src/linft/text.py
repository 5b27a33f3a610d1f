"""Text normalisation: one line of clean text, as every task reader (and user file) should hand to a tokenizer.

:func:`normalize_text` undoes what exports and scrapes leave in labelled corpora: CSV quote escapes, HTML entities
and tags, Windows-1252 bytes read as C1 controls, escape sequences written out, doubled quotes, line breaks.
"""

from __future__ import annotations

import html
import re

__all__ = ["normalize_text"]

#: a whole text wrapped in double quotes, inside which every ``"`` is doubled or backslash-escaped: a string field
#: that a CSV (or string-literal) export left encoded inside the cell
_QUOTED_FIELD = re.compile(r'"((?:[^"\\]|""|\\.)*)"', re.DOTALL)
_FIELD_ESCAPE = re.compile(r'""|\\["\']')
#: one HTML character reference, terminated by ``;`` (a bare ``&`` and names without ``;``, as in ``AT&T`` or
#: ``fish&chips``, are text)
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
#: HTML markup seen in reviews: line/paragraph breaks become a space, inline tags (links, emphasis) disappear
_BLOCK_TAG = re.compile(r"</?(?:br|p|div|li|ul|ol)\b[^<>]*>", re.IGNORECASE)
_INLINE_TAG = re.compile(r"</?(?:a|b|i|u|em|strong|span|font|sup|sub)\b[^<>]*>", re.IGNORECASE)
#: C1 control characters (U+0080-U+009F): Windows-1252 bytes decoded as Latin-1 (``\x85`` is an ellipsis)
_C1 = re.compile("[\u0080-\u009f]")
#: C0 controls other than whitespace, DEL, zero-width space, word joiner, byte-order mark and soft hyphen
_INVISIBLE = re.compile("[\u0000-\u0008\u000e-\u001b\u007f\u200b\u2060\ufeff\u00ad]")
#: an escape sequence written out as two characters (backslash, letter): ``\n`` ``\t`` ``\r`` ``\"`` ``\'``
_LITERAL_ESCAPE = re.compile(r"\\([ntr\"'])")
_ESCAPED = {"n": " ", "t": " ", "r": " ", '"': '"', "'": "'"}
_APOSTROPHES_IN_WORD = re.compile(r"(?<=\w)''(?=\w)")  # Munnabhai''s -> Munnabhai's


def _unwrap_field(text: str) -> str:
    r"""``"a ""b"" c"`` -> ``a "b" c``: unwrap a text that is one quoted string field, when it shows the escapes
    of one (a doubled ``""`` or a ``\"`` / ``\'`` inside) or is empty (``""``); a text merely quoted (``"Hi"``)
    is left alone."""
    match = _QUOTED_FIELD.fullmatch(text)
    if match is None or (match.group(1) and not _FIELD_ESCAPE.search(match.group(1))):
        return text
    return match.group(1).replace('""', '"')


def _c1_as_cp1252(match: re.Match) -> str:
    return bytes([ord(match.group(0))]).decode("cp1252", errors="ignore")  # undefined bytes (0x81...) vanish


def normalize_text(text: str) -> str:
    r"""One line of clean text, as a reader and a tokenizer should see it. In order:

    1. a text that is one CSV-quoted field (``"a ""b"" c"``) is unwrapped and un-doubled (``a "b" c``);
    2. HTML character references are decoded (repeatedly: ``&amp;amp;`` -> ``&``), then HTML tags removed;
    3. Windows-1252 characters read as C1 controls are repaired (``\x85`` -> ``…``), invisible characters dropped;
    4. escape sequences written out as backslash + letter: ``\n`` ``\t`` ``\r`` -> a space, ``\"`` -> ``"``,
       ``\'`` -> ``'``;
    5. doubled quotes: ``''`` inside a word -> ``'``, any other ``''`` -> ``"`` (the typewriter convention of the
       NYT and movie-review corpora), then any run of ``"`` -> one ``"``;
    6. all whitespace, line breaks included, collapsed to single spaces; stripped.

    Idempotent: ``normalize_text(normalize_text(t)) == normalize_text(t)``.
    """
    text = _unwrap_field(str(text).strip())
    for _ in range(4):
        decoded = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
        if decoded == text:
            break
        text = decoded
    text = _INLINE_TAG.sub("", _BLOCK_TAG.sub(" ", text))
    text = _INVISIBLE.sub("", _C1.sub(_c1_as_cp1252, text))
    text = _LITERAL_ESCAPE.sub(lambda m: _ESCAPED[m.group(1)], text)
    text = _APOSTROPHES_IN_WORD.sub("'", text).replace("''", '"')
    text = re.sub(r'"{2,}', '"', text)
    return " ".join(text.split())
