"""The rules' regexes speak RE2: linear time in the key's length, whatever the pattern or the key.

A key is anyone's upload, and a Python ``re`` pattern such as ``(\\d+)+\\.png$`` backtracks for ever
on 33 digits. So ``id_rule.regex`` and ``category_rule.regex`` run on one engine, RE2 (Arrow's
compute functions), on every page size, and their meaning is RE2's (README, "Rule regexes").

:func:`check_rule_regex` is what the config calls when it is loaded. It runs where the DAG file is
parsed, which must not import pyarrow, so it reads the pattern with RE2's own grammar in plain Python
and refuses what RE2 would refuse, naming the reason: back-references, look-arounds, possessive
quantifiers and the other backtracking-only constructs among them. One thing it cannot foresee is the
size of the compiled program (``\\pL{1000}`` outgrows RE2's memory budget): the catalog compiles the
pattern with RE2 itself before the listing starts and stops there, naming the same field
(:func:`arrow_pattern` gives it the text to compile). tests/pipeline/oss/test_catalog_rules.py holds
this module to RE2's verdict on random patterns.
"""

from __future__ import annotations

import unicodedata

_MAX_REPEAT = 1000  # RE2's limit for {n,m}, and for the product of nested counts
_POSIX_CLASSES = frozenset(
    f"[:{neg}{name}:]"
    for neg in ("", "^")
    for name in "alnum alpha ascii blank cntrl digit graph lower print punct space upper word xdigit".split()
)
# Unicode general categories and the scripts every RE2 release knows (later releases know more:
# a script missing here is refused, not guessed).
_UNICODE_GROUPS = frozenset(
    """Any C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps S Sc Sk Sm So Z Zl Zp Zs
    Arabic Armenian Avestan Balinese Bamum Bengali Bopomofo Braille Buginese Buhid Canadian_Aboriginal Carian
    Cham Cherokee Common Coptic Cuneiform Cypriot Cyrillic Deseret Devanagari Egyptian_Hieroglyphs Ethiopic
    Georgian Glagolitic Gothic Greek Gujarati Gurmukhi Han Hangul Hanunoo Hebrew Hiragana Imperial_Aramaic
    Inherited Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kannada Katakana Kayah_Li Kharoshthi
    Khmer Lao Latin Lepcha Limbu Linear_B Lisu Lycian Lydian Malayalam Meetei_Mayek Mongolian Myanmar New_Tai_Lue
    Nko Ogham Ol_Chiki Old_Italic Old_Persian Old_South_Arabian Old_Turkic Oriya Osmanya Phags_Pa Phoenician
    Rejang Runic Samaritan Saurashtra Shavian Sinhala Sundanese Syloti_Nagri Syriac Tagalog Tagbanwa Tai_Le
    Tai_Tham Tai_Viet Tamil Telugu Thaana Thai Tibetan Tifinagh Ugaritic Vai Yi""".split()
)
_NAME_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Mn", "Mc", "Nd", "Pc"})  # RE2's group names
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"
_PERL_CLASSES = "dDsSwW"


class StricterThanRE2(ValueError):
    """A pattern RE2 would run, refused because it would not mean what its author expects."""


class _Frame:
    """One open group: the largest product of nested counted repetitions inside it, and the
    product of its last atom (None: no atom to repeat, as after '(' or '|')."""

    def __init__(self) -> None:
        self.deepest = 1
        self.last: int | None = None

    def atom(self, product: int = 1) -> None:
        self.last = product
        self.deepest = max(self.deepest, product)


def _scan(pattern: str) -> list[tuple[int, int]]:
    """The spans of the capture groups' openings (``(`` or ``(?P<name>``), in order; raises
    ValueError (the reason) where RE2's parser would refuse the pattern."""
    p, n = pattern, len(pattern)
    frames = [_Frame()]
    captures: list[tuple[int, int]] = []
    i = 0
    last_was_repeat = False
    while i < n:
        c = p[i]
        frame = frames[-1]
        repeat = False
        if c == "(":
            if p.startswith("(?", i):
                i = _group_flags(p, i, frames, captures)
            else:
                captures.append((i, i + 1))
                frames.append(_Frame())
                i += 1
        elif c == ")":
            if len(frames) == 1:
                raise ValueError("does not compile in RE2: unexpected ')'")
            inner = frames.pop()
            frames[-1].atom(inner.deepest)
            i += 1
        elif c == "|":
            frame.last = None
            i += 1
        elif c in "*+?":
            i = _repeat(p, i + 1, frame, last_was_repeat, c, None)
            repeat = True
        elif c == "{":
            bounds = _counted(p, i)
            if bounds is None:
                if p.startswith("{,", i) and _counted(p[:i] + "{0" + p[i + 1 :], i) is not None:
                    raise StricterThanRE2(
                        "uses {,n}: RE2 reads it as literal text, Python as 0 to n repetitions; write {0,n}, "
                        "or \\{ for a literal brace"
                    )
                frame.atom()  # a literal '{'
                i += 1
            else:
                end, lo, hi = bounds
                i = _repeat(p, end, frame, last_was_repeat, p[i:end], (lo, hi))
                repeat = True
        elif c == "[":
            i = _char_class(p, i)
            frame.atom()
        elif c == "\\":
            i = _escape_outside_class(p, i, frame)
        else:
            frame.atom()
            i += 1
        last_was_repeat = repeat
    if len(frames) > 1:
        raise ValueError("does not compile in RE2: missing ')'")
    return captures


def _group_flags(p: str, i: int, frames: list[_Frame], captures: list[tuple[int, int]]) -> int:
    """``(?`` at ``i``: a named capture, a non-capturing group or flags. Returns where parsing goes on."""
    rest = p[i:]
    if rest.startswith(("(?=", "(?!", "(?<=", "(?<!")):
        raise ValueError("uses a look-around ((?=…), (?!…), (?<=…), (?<!…)), which RE2 does not support")
    if rest.startswith("(?P="):
        raise ValueError("uses a back-reference ((?P=name)), which RE2 does not support")
    if rest.startswith("(?>"):
        raise ValueError("uses an atomic group ((?>…)), which RE2 does not support")
    if rest.startswith("(?#"):
        raise ValueError("uses a comment group ((?#…)), which RE2 does not support: remove it")
    if rest.startswith("(?("):
        raise ValueError("uses a conditional group ((?(1)…|…)), which RE2 does not support")
    if (len(rest) > 4 and rest.startswith("(?P<")) or (len(rest) > 3 and rest.startswith("(?<")):
        begin = i + (4 if rest[2] == "P" else 3)
        end = p.find(">", i + 2)
        name = p[begin:end] if end >= 0 else ""
        if end < 0 or not name or not all(ch == "_" or unicodedata.category(ch) in _NAME_CATEGORIES for ch in name):
            shown = p[i : end + 1] if end >= 0 else p[i:]
            raise ValueError(f"does not compile in RE2: invalid named group {shown!r} (a name is letters, digits, '_')")
        captures.append((i, end + 1))
        frames.append(_Frame())
        return end + 1
    j = i + 2
    negated = saw_flag = False
    while True:
        if j >= len(p):
            raise ValueError("does not compile in RE2: missing ')' after '(?'")
        c = p[j]
        j += 1
        if c in "imsU":
            saw_flag = True
        elif c == "-" and not negated:
            negated, saw_flag = True, False
        elif c in ":)":
            if negated and not saw_flag:
                raise ValueError(f"does not compile in RE2: no flag after '-' in {p[i:j]!r}")
            if c == ":":
                frames.append(_Frame())
            return j
        elif c.isascii() and c.isalpha() and c != "P":
            raise ValueError(f"uses the inline flag {c!r}, which RE2 does not have (it knows i, m, s and U)")
        else:
            raise ValueError(f"does not compile in RE2: invalid group {p[i:j]!r}")


def _counted(p: str, i: int) -> tuple[int, int, int] | None:
    """``{n}``, ``{n,}`` or ``{n,m}`` at ``i`` as RE2 reads it: (end, n, m; -1: no upper bound), else None."""
    lo, j = _integer(p, i + 1)
    if lo is None or j >= len(p):
        return None
    hi: int | None = lo
    if p[j] == ",":
        j += 1
        if j >= len(p):
            return None
        if p[j] == "}":
            hi = -1
        else:
            hi, k = _integer(p, j)
            if hi is None:
                return None
            j = k
    if j >= len(p) or p[j] != "}":
        return None
    return j + 1, lo, hi


def _integer(text: str, j: int) -> tuple[int | None, int]:
    """RE2's ParseInteger: ASCII digits without a leading zero, at most 9 of them."""
    k = j
    while k < len(text) and text[k] in "0123456789":
        k += 1
    digits = text[j:k]
    if not digits or (len(digits) > 1 and digits[0] == "0") or len(digits) > 9:
        return None, j
    return int(digits), k


def _repeat(p: str, end: int, frame: _Frame, stacked: bool, op: str, bounds: tuple[int, int] | None) -> int:
    """A repetition operator ending at ``end`` applied to the frame's last atom."""
    greedy_end = end + 1 if end < len(p) and p[end] == "?" else end
    if stacked:
        if op == "+":
            raise ValueError("uses a possessive quantifier (*+, ++, ?+, {n}+), which RE2 does not support")
        raise ValueError(f"does not compile in RE2: stacked repetition operators before {op!r}")
    if bounds is not None:
        lo, hi = bounds
        if lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi != -1 and hi < lo):
            raise ValueError(f"does not compile in RE2: invalid repetition count {op!r} (at most {_MAX_REPEAT})")
    if frame.last is None:
        raise ValueError(f"does not compile in RE2: nothing before the repetition operator {op!r}")
    if bounds is not None:
        lo, hi = bounds
        count = hi if hi >= 0 else lo
        product = frame.last * max(count, 1)
        if (lo >= 2 or hi >= 2) and product > _MAX_REPEAT:
            raise ValueError(f"does not compile in RE2: nested repetition counts multiply past {_MAX_REPEAT} at {op!r}")
        frame.atom(product)
    return greedy_end


def _escape_outside_class(p: str, i: int, frame: _Frame) -> int:
    nxt = p[i + 1] if i + 1 < len(p) else ""
    if nxt in ("b", "B", "A", "z"):
        frame.atom()
        return i + 2
    if nxt == "Q":  # literal text up to \E or the end
        end = p.find("\\E", i + 2)
        end = len(p) if end < 0 else end
        if end > i + 2:
            frame.atom()
        return min(end + 2, len(p))
    if nxt == "C":
        raise StricterThanRE2("uses \\C (one byte), which can cut a UTF-8 character in two")
    if nxt == "Z":
        raise ValueError("uses \\Z, which RE2 does not support: write \\z or $ (in RE2 both mean the very end)")
    if nxt in ("p", "P"):
        j = _unicode_group(p, i)
    elif nxt and nxt in _PERL_CLASSES:
        j = i + 2
    else:
        j = _escape(p, i)
    frame.atom()
    return j


def _escape(p: str, i: int) -> int:
    """RE2's ParseEscape of one character (``\\n``, ``\\x41``, ``\\101``, ``\\.``); returns its end."""
    if i + 1 >= len(p):
        raise ValueError("does not compile in RE2: trailing backslash")
    c = p[i + 1]
    if c in "1234567" and not (i + 2 < len(p) and p[i + 2] in _OCTAL) or c in "89":
        raise ValueError(f"uses a back-reference (\\{c}), which RE2 does not support")
    if c in _OCTAL:  # up to three octal digits
        j = i + 2
        while j < len(p) and j < i + 4 and p[j] in _OCTAL:
            j += 1
        return j
    if c == "x":
        if p.startswith("{", i + 2):
            end = p.find("}", i + 3)
            digits = p[i + 3 : end] if end >= 0 else ""
            if not digits or any(d not in _HEX for d in digits) or int(digits, 16) > 0x10FFFF:
                raise ValueError(f"does not compile in RE2: invalid escape {p[i : (end + 1) if end >= 0 else None]!r}")
            return end + 1
        if len(p) >= i + 4 and p[i + 2] in _HEX and p[i + 3] in _HEX:
            return i + 4
        raise ValueError(f"does not compile in RE2: invalid escape {p[i : i + 4]!r}")
    if c in "afnrtv" or (c.isascii() and not c.isalnum()):
        return i + 2
    raise ValueError(f"uses the escape {p[i : i + 2]!r}, which RE2 does not know")


def _unicode_group(p: str, i: int) -> int:
    """``\\pL``, ``\\p{Greek}``, ``\\P{^Han}`` at ``i``; returns its end."""
    if i + 2 >= len(p):
        raise ValueError("does not compile in RE2: \\p needs a class name")
    if p[i + 2] == "{":
        end = p.find("}", i + 3)
        if end < 0:
            raise ValueError(f"does not compile in RE2: missing '}}' in {p[i:]!r}")
        name, j = p[i + 3 : end], end + 1
    else:
        name, j = p[i + 2], i + 3
    if name.removeprefix("^") not in _UNICODE_GROUPS:
        raise ValueError(f"does not compile in RE2: unknown Unicode class {p[i:j]!r}")
    return j


def _char_class(p: str, i: int) -> int:
    """``[...]`` at ``i`` as RE2 reads it; returns its end."""
    j = i + 1
    if j < len(p) and p[j] == "^":
        j += 1
    first = True
    while j < len(p) and (p[j] != "]" or first):
        first = False
        if p.startswith("[:", j) and len(p) - j > 2:
            end = p.find(":]", j + 2)
            if end >= 0:
                name = p[j : end + 2]
                if name not in _POSIX_CLASSES:
                    raise ValueError(f"does not compile in RE2: unknown class {name!r}")
                j = end + 2
                continue
        if p[j] == "\\" and len(p) - j > 2 and p[j + 1] in "pP":
            j = _unicode_group(p, j)
            continue
        if p[j] == "\\" and j + 1 < len(p) and p[j + 1] in _PERL_CLASSES:
            j += 2
            continue
        lo, j = _class_char(p, j)
        if len(p) - j >= 2 and p[j] == "-" and p[j + 1] != "]":
            hi, j = _class_char(p, j + 1)
            if hi < lo:
                raise ValueError(f"does not compile in RE2: empty range in a class (U+{lo:04X} > U+{hi:04X})")
    if j >= len(p):
        raise ValueError("does not compile in RE2: missing ']'")
    return j + 1


def _class_char(p: str, j: int) -> tuple[int, int]:
    """One character of a class (a range's end): its code point and where it ends."""
    if p[j] != "\\":
        return ord(p[j]), j + 1
    end = _escape(p, j)
    body = p[j + 1 : end]
    if body[0] in _OCTAL:
        return int(body, 8), end
    if body[0] == "x":
        return int(body.strip("x{}"), 16), end
    return ord({"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}.get(body, body)), end


def check_rule_regex(pattern: str, holds: str) -> str:
    """``pattern`` unchanged if RE2 can run it as a rule's regex (one capture group holding ``holds``,
    the first); otherwise ValueError saying why, for the config's validators."""
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"regex {pattern!r} is not valid Unicode text") from None
    try:
        captures = _scan(pattern)
    except ValueError as exc:
        raise type(exc)(f"regex {pattern!r} {exc}") from None
    if not captures:
        raise ValueError(f"regex {pattern!r} needs one capture group holding {holds}")
    return pattern


def arrow_pattern(pattern: str) -> str:
    """The pattern for Arrow's ``extract_regex``: its first capture group named ``g``, the others made
    non-capturing (Arrow extracts named groups only). The pattern must pass :func:`check_rule_regex`."""
    out, at = [], 0
    for number, (start, end) in enumerate(_scan(pattern)):
        out += [pattern[at:start], "(?P<g>" if number == 0 else "(?:"]
        at = end
    return "".join(out) + pattern[at:]


def sql_pattern(pattern: str) -> str:
    """The pattern for MaxCompute's ``REGEXP_EXTRACT(s, pattern, 1)``: its first capture group a plain
    ``(`` (group 1), the others made non-capturing, named groups included (``(?P<name>`` is no syntax
    every engine shares). The pattern must pass :func:`check_rule_regex`."""
    out, at = [], 0
    for number, (start, end) in enumerate(_scan(pattern)):
        out += [pattern[at:start], "(" if number == 0 else "(?:"]
        at = end
    return "".join(out) + pattern[at:]
