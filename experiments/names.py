"""The one rule for text people give Wattlab (names, keys and values of an experiment
file, token names): no control characters and no invisible formatting characters.

Control characters (NUL, ESC, tab, newline...) and lone surrogates: PostgreSQL cannot
store NUL, and ESC sequences would be printed raw by ``manage.py submit``. Format
characters (Unicode category Cf): right-to-left overrides and isolates make a name read
differently from what it is (``exp‮gnp.exe``), and zero-width spaces and joiners make
two names that look the same differ. None belongs in a name or a value.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

#: Cc: control characters; Cs: lone surrogates; Cf: bidirectional overrides and
#: isolates, zero-width spaces and joiners, the byte-order mark and other invisible
#: formatting characters.
_REFUSED = ("Cc", "Cs", "Cf")


def hidden_character(text: str) -> str | None:
    """The first character of ``text`` the rule refuses, or None."""
    for ch in text:
        if unicodedata.category(ch) in _REFUSED:
            return ch
    return None


def has_control_characters(text: str) -> bool:
    return hidden_character(text) is not None


def problem(text: str) -> str:
    """Why ``text`` is refused ("" when it is not), naming the character."""
    ch = hidden_character(text)
    if ch is None:
        return ""
    kind = "an invisible formatting" if unicodedata.category(ch) == "Cf" else "a control"
    name = unicodedata.name(ch, "")
    return f"contains {kind} character (U+{ord(ch):04X}{' ' + name if name else ''})"


def no_control_characters(value: str) -> None:
    """Django validator for a name (forms, the admin through the model fields)."""
    message = problem(value)
    if message:
        raise ValidationError(message, code="control_character")
