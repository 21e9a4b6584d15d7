"""Rules that cannot hang or crash on any key (issue 12).

The rules' regexes run on RE2 (linear time) on every page size; a pattern RE2 cannot run is refused
when the config is loaded; a category segment of any size is no key's part rather than a crash. The
catalog has one path for every page size, held here to a slow object-by-object reference written
in this file (Python ``re`` on patterns where RE2 and Python mean the same), on random nasty keys,
random rules and page sizes around the old switch-over at 64 keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.config import CategoryRule, IdRule, SourceConfig, parse_index_config
from pipeline.errors import CatalogError, ConfigError
from pipeline.oss.catalog import ARCHIVE_CLASSES, CatalogBuilder, ListedObject
from pipeline.patterns import StricterThanRE2, _scan, arrow_pattern, check_rule_regex

REPO = Path(__file__).resolve().parents[3]
PAGE_SIZES = (1, 2, 63, 64, 65, 200)
INT64_MAX = 2**63 - 1


def isolated(code: str, timeout: float = 60) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints: a hang or a crash (SIGABRT)
    fails this test instead of stopping pytest."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the catalog did not finish within {timeout} s (a regex backtracking?)")
    assert done.returncode == 0, f"the catalog crashed (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the findings ---------------------------------------------------------------------------------


def test_a_nested_quantifier_id_regex_finishes_on_a_33_digit_key_on_every_page_size() -> None:
    """``(\\d+)+\\.png$`` is valid RE2 and runs in linear time: accepted, and a 33-digit ``.jpg`` name
    (Python's ``re`` backtracks 2**33 ways on it) is a bad id at once, on 1-key pages as on big ones."""
    out = isolated(
        """
import json, time
from pipeline.config import CategoryRule, IdRule, SourceConfig
from pipeline.oss.catalog import CatalogBuilder, ListedObject
source = SourceConfig(oss_conn_id="c", bucket="bkt", prefixes=["p/"], extensions=["jpg", "png"])
rule = IdRule(kind="filename_digits", regex=r"(\\d+)+\\.png$")
out = {}
for size in (1, 2, 63, 64, 65, 106):
    builder = CatalogBuilder(source, rule, CategoryRule(kind="path_segment", segment=1))
    page = [ListedObject("p/1/" + "1" * 33 + ".jpg", 5)] + [ListedObject(f"p/2/{i}.png", 5) for i in range(size - 1)]
    started = time.monotonic()
    rows = builder.rows(page).to_pylist()
    out[size] = [len(rows), builder.counts.skipped["bad_id"], time.monotonic() - started]
print(json.dumps(out))
"""
    )
    for size, (kept, bad_ids, seconds) in out.items():
        assert (kept, bad_ids) == (int(size) - 1, 1), size
        assert seconds < 2, (size, seconds)


@pytest.mark.parametrize(
    "field, pattern, reason",
    [
        ("id_rule", r"(\d)\1", r"back-reference (\1), which RE2 does not support"),
        ("category_rule", r"(?P<c>\d+)/(?P=c)/", "back-reference ((?P=name))"),
        ("id_rule", r"(?<=sku-)(\d+)", "look-around"),
        ("category_rule", r"^(?!tmp/)(\w+)/", "look-around"),
        ("category_rule", r"^(\w++)/", "possessive quantifier"),
        ("id_rule", r"(?>(\d+))\.", "atomic group"),
        ("id_rule", r"(\d+)\.jpg\Z", r"\Z, which RE2 does not support: write \z or $"),
        ("id_rule", r"(?x) (\d+) \.", "inline flag 'x'"),
        ("id_rule", r"(\d{,3})\.", "write {0,n}"),
        ("id_rule", r"(\d+)\.\C", r"\C (one byte)"),
        ("id_rule", r"(\d+", "does not compile in RE2: missing ')'"),
        ("category_rule", r"^([[:alfa:]]+)/", "unknown class '[:alfa:]'"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_when_the_config_is_loaded(field: str, pattern: str, reason: str) -> None:
    data = {
        "name": "shop",
        "source": {"oss_conn_id": "oss_x", "bucket": "my-bucket", "prefixes": ["a/"]},
        "id_rule": {"kind": "filename_digits"},
        "category_rule": {"kind": "path_segment", "segment": 0},
        "warehouse": {"conn_id": "mc", "table": "image_catalog"},
    }
    data[field] = {"kind": "filename_digits" if field == "id_rule" else "regex", "regex": pattern}
    with pytest.raises(ConfigError) as refused:
        parse_index_config(data, "shop.yaml")
    message = str(refused.value)
    assert f"{field}" in message and repr(pattern) in message and reason in message, message


def test_a_backreference_is_refused_naming_the_reason() -> None:
    with pytest.raises(ValueError, match=r"regex '\(\\\\d\)\\\\1' uses a back-reference \(\\1\), which RE2 does not support"):
        IdRule(kind="filename_digits", regex=r"(\d)\1")


OUT_OF_RANGE_SEGMENTS = [-(2**31), 2**31 - 1, 2**31, -(2**63), 2**63 - 1, 2**63, 2**64, 10**20, -(10**20), 4, -5]


def test_huge_and_negative_segments_are_no_category_on_small_and_large_pages_alike() -> None:
    """``segment: -2147483648`` aborted the process (std::bad_alloc) on pages of 64+ keys, ±1e20 raised
    OverflowError there, and small pages worked. Now a segment of any size is the same on every page:
    no such part, so the category is unmapped. Built without validation (``model_construct``): the
    catalog must not rely on the config's bounds."""
    out = isolated(
        f"""
import json
from pipeline.config import CategoryRule, IdRule, SourceConfig
from pipeline.oss.catalog import CatalogBuilder, ListedObject
source = SourceConfig(oss_conn_id="c", bucket="bkt", prefixes=["p/"], extensions=["jpg"])
out = {{}}
for segment in {OUT_OF_RANGE_SEGMENTS!r} + [1, -3]:
    for size in {PAGE_SIZES!r}:
        rule = CategoryRule.model_construct(kind="path_segment", segment=segment, regex=None, mapping=None,
                                            unmapped="skip", default_id=None)
        builder = CatalogBuilder(source, IdRule(kind="filename_digits"), rule)
        rows = builder.rows([ListedObject(f"p/7/x/{{i}}.jpg", 5) for i in range(size)]).to_pylist()
        out[f"{{segment}} {{size}}"] = [len(rows), builder.counts.skipped["unmapped_category"],
                                        dict(builder.counts.unmapped_categories), sorted({{r["cate_id"] for r in rows}})]
print(json.dumps(out))
"""
    )
    for segment in OUT_OF_RANGE_SEGMENTS:
        for size in PAGE_SIZES:
            assert out[f"{segment} {size}"] == [0, size, {"<none>": size}, []], (segment, size)
    for segment in (1, -3):  # in range: "p/7/x/N.jpg" has 4 parts, segment 1 and -3 are "7"
        for size in PAGE_SIZES:
            assert out[f"{segment} {size}"] == [size, 0, {}, [7]], (segment, size)


def test_a_pattern_too_large_for_re2_stops_the_load_before_anything_is_listed() -> None:
    """The config cannot foresee RE2's program size; the catalog compiles the pattern first."""
    rule = IdRule(kind="filename_digits", regex=r"(\pL{1000})")
    source = SourceConfig(oss_conn_id="c", bucket="bkt", prefixes=["p/"])
    with pytest.raises(ConfigError, match=r"id_rule.regex '\(\\\\pL\{1000\}\)' cannot run on RE2: .*too large"):
        CatalogBuilder(source, rule, CategoryRule(kind="path_segment", segment=0))


def test_rule_regexes_mean_what_re2_means_on_any_page() -> None:
    """README, "Rule regexes": ``\\d`` is ASCII, ``$`` is the very end, ``(?P<n>…)`` is a group."""
    source = SourceConfig(oss_conn_id="c", bucket="bkt", prefixes=["p/"], extensions=["jpg", "k"])
    rule = CategoryRule(kind="regex", regex=r"^c(?P<cat>\d+)/")
    objects = [("c3/12.jpg", True), ("c٣/13.jpg", False), ("c4/14.jpg\n", False), ("c5/15.\u212a", False), ("c6/16.K", True)]
    for filler in (0, 100):
        builder = CatalogBuilder(source, IdRule(kind="filename_digits", regex=r"(\d+)\."), rule)
        page = [ListedObject(key, 5) for key, _ in objects] + [ListedObject(f"c9/{i}.jpg", 5) for i in range(filler)]
        rows = builder.rows(page).to_pylist()[: sum(kept for _, kept in objects)]
        assert [r["source_image"] for r in rows] == ["/" + key for key, kept in objects if kept]
        assert builder.counts.skipped["unmapped_category"] == 1 and builder.counts.skipped["not_image"] == 2


# -- the config's check is RE2's verdict -----------------------------------------------------------

PATTERN_PIECES = [*"()[]{}|*+?.^$\\-,:<>=!#PEQ0123789abdswpzAZBCxiUms_é\n", "(?", "(?:", "(?P<", "(?<", "[:alpha:]",
                  "[:^word:]", "[:foo:]", "\\Q", "\\E", "\\x{", "\\p{", "Greek}", "L}", "{2}", "{1,3}", "{0,}", "{1000}",
                  "{10}", "\\x4", "\\p{Foo}", "(?i)", "(?-", "😀", "\\1", "\\12", "\\d", "\\pN"]


def _re2_verdict(pattern: str) -> str | None:
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except pa.ArrowInvalid as exc:
        return str(exc)
    return None


@settings(max_examples=3000, deadline=None, database=None)
@given(st.lists(st.sampled_from(PATTERN_PIECES), min_size=1, max_size=20).map("".join))
def test_the_config_check_accepts_exactly_what_re2_compiles(pattern: str) -> None:
    refusal = _re2_verdict(pattern)
    try:
        captures = _scan(pattern)
    except StricterThanRE2:
        return  # refused on purpose ({,n}, \C): RE2 would run it, meaning something else than it seems
    except ValueError as exc:
        assert refusal is not None, f"RE2 compiles {pattern!r}, the check refused it: {exc}"
        return
    if refusal is not None:
        assert "too large" in refusal, f"the check passed {pattern!r}, RE2 refused it: {refusal}"
        return
    if captures:  # the rewrite names group 1 and only it, and matches the same strings
        rewritten = arrow_pattern(pattern)
        probe = pa.array(["", "a", "ab1", "x/12.jpg", "é\n", "Greek", "{2}"], pa.string())
        extracted = pc.extract_regex(probe, rewritten)
        assert [extracted.type.field(i).name for i in range(extracted.type.num_fields)] == ["g"]
        assert pc.is_valid(extracted).to_pylist() == pc.match_substring_regex(probe, pattern).to_pylist()
    else:
        with pytest.raises(ValueError, match="needs one capture group"):
            check_rule_regex(pattern, "the digits")


# -- one path for every page size, against a slow reference -----------------------------------------

# Pattern pieces as (RE2, Python with re.ASCII): on these both engines pick the same match and groups.
_LITERALS = ["a", "b", "x", "0", "7", "9", "/", r"\.", "-", "_", " ", "é", r"\+", "%", "😀"]
_CLASSES = [r"\d", r"\w", "[0-9]", "[^/]", "[^.]", "[a-z]", ".", r"\D", "[^0-9/]"]
_QUANTIFIERS = ["*", "+", "?", "{1,3}", "{2}", "*?", "+?"]


@st.composite
def _regex(draw: st.DrawFn, budget: list[int], depth: int = 0) -> tuple[str, str, bool]:
    """(RE2 text, Python text, may match empty); quantifiers only on atoms that never match empty
    (the engines differ on what a group captured in an empty iteration), and one per pattern: the
    reference's Python ``re`` backtracks, and two quantifiers over a 600-character key are cubic."""
    items = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["lit", "class", "group", "ncgroup"] if depth < 2 else ["lit", "class"]))
        if kind in ("lit", "class"):
            text = draw(st.sampled_from(_LITERALS if kind == "lit" else _CLASSES))
            atom = (text, text, False)
        else:
            inner = draw(st.lists(_regex(budget, depth + 1), min_size=1, max_size=2))
            body2, body_py = "|".join(i[0] for i in inner), "|".join(i[1] for i in inner)
            opener = "(" if kind == "group" else "(?:"
            atom = (f"{opener}{body2})", f"{opener}{body_py})", any(i[2] for i in inner))
        if not atom[2] and budget[0] and draw(st.booleans()):
            budget[0] -= 1
            quantifier = draw(st.sampled_from(_QUANTIFIERS))
            atom = (atom[0] + quantifier, atom[1] + quantifier, quantifier[0] in "*?")
        items.append(atom)
    return "".join(i[0] for i in items), "".join(i[1] for i in items), all(i[2] for i in items)


@st.composite
def rule_regex(draw: st.DrawFn) -> tuple[str, str]:
    """A rule's regex with at least one capture group: [^] prefix (group) suffix [$]."""
    budget = [1]
    prefix, group, suffix = draw(_regex(budget)), draw(_regex(budget)), draw(_regex(budget))
    start = draw(st.sampled_from(["", "^"]))
    end2, end_py = draw(st.sampled_from([("", ""), ("$", r"\Z")]))
    head = (prefix[0], prefix[1]) if draw(st.booleans()) else ("", "")
    tail = (suffix[0], suffix[1]) if draw(st.booleans()) else ("", "")
    return (f"{start}{head[0]}({group[0]}){tail[0]}{end2}", f"{start}{head[1]}({group[1]}){tail[1]}{end_py}")


_SEGMENTS = ["p1", "7", "12", "007", "0", "shoes", "x", "", "99999999999999999999", "%2F", "a+b", "sp ace", "图片", "😀",
             "\n", "ſ", "c٣", "1\n"]
_NAMES = ["123.jpg", "45.PNG", "a.jpg", "1.2.jpg", ".jpg", "x.txt", "noext", "12.JpG", "1234567890123456789.jpg",
          "9223372036854775808.jpg", "0009.gif", "sku-42_front.jpg", "7.jpg\n", "8.\u212apg", "٣.jpg", "9.jpg/",
          "1" * 33 + ".jpg", "%2F5.png", "6 .jpg", "+7.jpg", "😀8.jpg"]
_key_part = st.one_of(
    st.sampled_from(_SEGMENTS),
    st.text(st.characters(codec="utf-8"), max_size=6),
    st.text("0123456789", min_size=1, max_size=22),
)
_image_keys = st.builds(lambda parts, name: "/".join([*parts, name]), st.lists(_key_part, max_size=4), st.sampled_from(_NAMES))
_keys = st.one_of(
    _image_keys, _image_keys, _image_keys,
    st.builds(lambda parts, name: "/".join([*parts, name]), st.lists(_key_part, max_size=4), _key_part),
    st.builds(lambda n, chunk, name: chunk * n + name, st.integers(1, 150), st.sampled_from(["ab/", "9", "é", "😀/", " +"]),
              st.sampled_from(_NAMES)),
)
_RESTORES = ["", 'ongoing-request="true"', 'ongoing-request="false", expiry-date="Sat, 05 Dec 2026 07:38:08 GMT"']
_objects = st.builds(
    ListedObject, _keys, st.sampled_from([5] * 8 + [0, 1, 49, 50, 51]),
    st.sampled_from(["Standard"] * 8 + ["IA", "Archive", "ColdArchive", "DeepColdArchive"]), st.sampled_from(_RESTORES),
    st.one_of(st.none(), st.text("0123456789ABCDEF-", min_size=1, max_size=40)),
)


@st.composite
def rules(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(IdRule, CategoryRule, Python id regex or None, Python category regex or None)."""
    id_choice = draw(st.sampled_from(["hash", "default", "default", "demo", "random", "random"]))
    py_id = None
    if id_choice == "hash":
        id_rule = IdRule(kind="hash")
    else:
        pair = {"default": (r"(\d+)\.[^.]+$", r"(\d+)\.[^.]+\Z"), "demo": (r"^(\d+)\.[^.]+$", r"^(\d+)\.[^.]+\Z")}.get(id_choice)
        re2_text, py_text = pair or draw(rule_regex())
        id_rule, py_id = IdRule(kind="filename_digits", regex=re2_text), re.compile(py_text, re.ASCII)
    mapping = draw(st.none() | st.none() | st.dictionaries(st.sampled_from(_SEGMENTS + ["a", "b", "x", "7"]), st.integers(0, 99), min_size=1, max_size=4))
    unmapped = draw(st.sampled_from(["skip", "skip", "default", "default", "fail"]))
    default_id = 0 if unmapped == "default" else None
    py_cat = None
    if draw(st.booleans()):
        # Huge segments that raise (not the ones that aborted the process: those run in a subprocess above).
        segment = draw(st.integers(-2, 1) | st.integers(-6, 6) | st.sampled_from([10**20, -(10**20), 2**64, -(2**63), 40, -40]))
        category_rule = CategoryRule.model_construct(kind="path_segment", segment=segment, regex=None, mapping=mapping,
                                                     unmapped=unmapped, default_id=default_id)
    else:
        re2_text, py_text = draw(rule_regex())
        category_rule = CategoryRule(kind="regex", regex=re2_text, mapping=mapping, unmapped=unmapped, default_id=default_id)
        py_cat = re.compile(py_text, re.ASCII)
    return id_rule, category_rule, py_id, py_cat


def reference(objects: list[ListedObject], source: SourceConfig, id_rule: IdRule, category_rule: CategoryRule,
              py_id: re.Pattern | None, py_cat: re.Pattern | None) -> tuple:
    """The rules as README states them, object by object, in plain Python."""
    rows, skipped, unmapped_names, archived = [], Counter(), Counter(), []

    def digits(text: str | None) -> int | None:
        ok = bool(text) and all(ch in "0123456789" for ch in text) and int(text) <= INT64_MAX  # type: ignore[arg-type]
        return int(text) if ok else None  # type: ignore[arg-type]

    for obj in objects:
        key, name = obj.key, obj.key.rpartition("/")[2]
        extension = name.rpartition(".")[2] if "." in name else ""
        if key.endswith("/"):
            reason = "folder_marker"
        elif not (extension.isascii() and extension.lower() in source.extensions):
            reason = "not_image"
        elif obj.size == 0:
            reason = "zero_bytes"
        elif obj.size < source.min_size_bytes:
            reason = "too_small"
        elif obj.size > source.max_size_bytes:
            reason = "too_large"
        elif obj.storage_class in ARCHIVE_CLASSES and 'ongoing-request="false"' not in obj.restore:
            reason = "archived"
            archived.append(obj)
        else:
            if py_id is None:
                row_id: int | None = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1
            else:
                found = py_id.search(name)
                row_id = digits(found.group(1) if found else None)
            if row_id is None:
                reason = "bad_id"
            else:
                if py_cat is not None:
                    found = py_cat.search(key)
                    token = found.group(1) if found else None
                else:
                    parts, index = key.split("/"), category_rule.segment
                    token = parts[index] if -len(parts) <= index < len(parts) else None  # type: ignore[operator]
                mapping = category_rule.mapping
                cate_id = (mapping.get(token) if mapping is not None else digits(token)) if token else None
                if cate_id is None:
                    unmapped_names[token or "<none>"] += 1
                    if category_rule.unmapped == "fail":
                        return "fail", f"object {key!r} has category {token!r}"
                    cate_id = category_rule.default_id
                if cate_id is None:
                    reason = "unmapped_category"
                else:
                    rows.append({"id": row_id, "source_image": "/" + key, "cate_id": cate_id, "etag": obj.etag})
                    continue
        skipped[reason] += 1
    archived_keys = sorted({obj.key for obj in archived})[:10]
    return rows, dict(skipped), dict(unmapped_names), archived_keys, dict(Counter(obj.storage_class for obj in archived))


SOURCE = SourceConfig(oss_conn_id="c", bucket="bkt", prefixes=["p/"], extensions=["jpg", "png", "gif"], min_size_bytes=2,
                      max_size_bytes=50)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_objects, min_size=1, max_size=12), rules(), st.sampled_from(PAGE_SIZES), st.booleans(),
       st.randoms(use_true_random=False))
def test_every_page_size_gives_the_reference_rows_and_counts(distinct, chosen_rules, size, ascii_only, rnd) -> None:  # type: ignore[no-untyped-def]
    id_rule, category_rule, py_id, py_cat = chosen_rules
    if ascii_only:  # pages of printable ASCII keys (the usual page)
        distinct = [obj._replace(key="".join(ch if " " <= ch <= "~" else "x" for ch in obj.key)) for obj in distinct]
    page = (distinct + [rnd.choice(distinct) for _ in range(size)])[:size]
    rnd.shuffle(page)
    expected = reference(page, SOURCE, id_rule, category_rule, py_id, py_cat)
    builder = CatalogBuilder(SOURCE, id_rule, category_rule)
    if expected[0] == "fail":
        with pytest.raises(CatalogError) as failed:
            builder.rows(page)
        assert expected[1] in str(failed.value)
        event("unmapped: fail stopped the page")
        return
    rows = builder.rows(page).to_pylist()
    counts = builder.counts
    got = (rows, {k: v for k, v in counts.skipped.items() if v}, dict(counts.unmapped_categories),
           counts.archived_examples, dict(counts.archived_classes))
    assert got == expected, (id_rule, category_rule)
    event("rows kept" if rows else "no row kept")
    assert counts.listed == size and counts.kept == len(rows)


@pytest.mark.parametrize("size", [1, 64, 65])
def test_a_mapping_with_no_name_that_can_match_leaves_every_key_unmapped(size: int) -> None:
    """Found by the property test: a mapping whose only name is '' (never looked up) indexed an empty
    array and raised IndexError; every key is simply unmapped."""
    id_rule = IdRule(kind="hash")
    category_rule = CategoryRule.model_construct(kind="regex", segment=None, regex="(a)", mapping={"": 0},
                                                 unmapped="skip", default_id=None)
    builder = CatalogBuilder(SOURCE, id_rule, category_rule)
    assert builder.rows([ListedObject(f"p/a{i}.jpg", 5) for i in range(size)]).to_pylist() == []
    assert dict(builder.counts.skipped)["unmapped_category"] == size
