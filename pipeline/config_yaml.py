"""Reading an index config file: whatever the file holds, the answer is data or a short ConfigError, at once.

The DAG file loads every config when the DAG processor imports it, so one hostile file must neither
hang nor kill that process. The file is read up to :data:`MAX_CONFIG_BYTES` (a regular file only: a
FIFO or a device never blocks the read), decoded as UTF-8 and parsed with a loader that keeps YAML to
the plain data an index config is made of:

* no anchors or aliases (``&a`` / ``*a``): a few hundred bytes of aliases of aliases expand to 10**8
  values (the "billion laughs"), whose repr alone took 6 GB;
* no duplicate keys: YAML keeps the last one silently, so a second ``bucket:`` overrode the first;
* no more than :data:`MAX_NODES` values (a bound on the parse's time), and no nesting deeper than
  :data:`MAX_DEPTH` levels: the composer recurses, 50,000 '[' were a RecursionError;
* no number longer than :data:`MAX_NUMBER_CHARS` characters: Python refuses to parse an int of 4,300+
  digits with a bare ValueError;
* no tags but the core ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!seq``,
  ``!!map``): ``!!binary``, ``!!set``, ``!!timestamp``, ``!!python/...`` are refused;
* dates stay strings: ``start_date: 2026-11-01`` is the string '2026-11-01' (YAML 1.1 makes it a
  date, and ``2026-13-45`` a bare ValueError); ``<<`` is a plain key (no merge keys without aliases).

Every refusal names the line and the field (``line 7: source.bucket: ...``). The events come from
libyaml when PyYAML has it (5-10x faster than the pure-Python parser, the same rules either way).
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from pipeline.errors import ConfigError

#: An index config is a few KB; 10,000 mapped categories fit in ~200 KB.
MAX_CONFIG_BYTES = 256 * 1024
#: The deepest field is opensearch.smoke.top_k: 4 levels, counting the file's own mapping.
MAX_DEPTH = 12
#: Values (scalars, lists, mappings) in one file: 10,000 mapped categories are 20,000. Bounds the parse to ~0.3 s.
MAX_NODES = 50_000
#: The longest legitimate number is a 64-bit value in binary with '_' separators.
MAX_NUMBER_CHARS = 100
#: Longest excerpt of anything the file holds that a message quotes.
MAX_EXCERPT = 60

_TAG = "tag:yaml.org,2002:"
_CORE_TAGS = {f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")}
_DROPPED_RESOLVERS = {f"{_TAG}timestamp", f"{_TAG}merge", f"{_TAG}value"}


def clip(text: str, limit: int = MAX_EXCERPT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = MAX_EXCERPT
_EXCERPT.maxlist = _EXCERPT.maxdict = _EXCERPT.maxtuple = _EXCERPT.maxset = 5
_EXCERPT.maxlevel = 2
_EXCERPT.maxlong = 40


def excerpt(value: Any) -> str:
    """A short repr of ``value``, however large or deep: error messages quote bad values through it."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"  # repr() itself refuses 4,300+ digits
    try:
        return clip(_EXCERPT.repr(value))
    except Exception:  # e.g. a huge int inside a list: say what it is instead
        return f"a {type(value).__name__}"


def format_location(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('source', 'prefixes', 2)`` → ``source.prefixes[2]``; every part quoted at most MAX_EXCERPT long."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int) and not isinstance(item, bool):
            parts.append(f"[{excerpt(item)}]")
        else:
            parts.append(("." if parts else "") + clip(str(item), MAX_EXCERPT))
    return "".join(parts) or "(top level)"


class RefusedYaml(yaml.YAMLError):
    """YAML this loader does not read; the message names the line and the field."""

    def __init__(self, node_or_event: Any, location: str, problem: str) -> None:
        mark = node_or_event.start_mark
        super().__init__(f"line {mark.line + 1}: {location}: {problem}")


class _ConfigResolver(Resolver):
    """YAML 1.1's implicit types without timestamps, merge keys and the '=' value key."""


_ConfigResolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_RESOLVERS]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}


class _ConfigComposer(Composer):
    """The composer, refusing anchors, aliases, other tags and deep nesting as it meets them."""

    def __init__(self) -> None:
        super().__init__()
        self._location: list[Any] = []  # the field being composed: mapping keys and sequence positions
        self._nodes = 0

    def location(self) -> str:
        return format_location(self._path())

    def _path(self) -> tuple[Any, ...]:
        return tuple(part for part in self._location if part is not None)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # ``index`` is the key node when composing a mapping's value, the position in a sequence, and
        # None for the document and for a mapping's keys (their field is the mapping's).
        if isinstance(index, ScalarNode):
            self._location.append(index.value)
        elif isinstance(index, Node):
            self._location.append("?")  # a key that is a list or a mapping: refused when constructed
        else:
            self._location.append(index)
        try:
            event = self.peek_event()
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise RefusedYaml(event, self.location(), f"more than {MAX_NODES:,} values in one file: "
                                  "an index config holds a few dozen")
            if len(self._location) > MAX_DEPTH:
                raise RefusedYaml(event, self.location(), f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(event, AliasEvent):
                raise RefusedYaml(event, self.location(), f"YAML aliases (*{clip(event.anchor)}) are not "
                                  "allowed in an index config: write the value out")
            if event.anchor is not None:
                raise RefusedYaml(event, self.location(), f"YAML anchors (&{clip(event.anchor)}) are not "
                                  "allowed in an index config: write each value out")
            if event.tag not in (None, "!") and event.tag not in _CORE_TAGS:
                tag = clip(event.tag.replace(_TAG, "!!"))
                raise RefusedYaml(event, self.location(), f"YAML tag {tag} is not allowed in an index config: "
                                  "write plain strings, numbers, lists and mappings")
            node = super().compose_node(parent, index)
            node.config_path = self._path()  # for the constructor's messages
            return node
        finally:
            self._location.pop()


def _where(node: Node, *more: Any) -> str:
    return format_location([*getattr(node, "config_path", ()), *more])


class _ConfigConstructor(SafeConstructor):
    """The safe constructor, refusing duplicate keys and over-long numbers."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, KeyError, TypeError, OverflowError):
            # e.g. ``!!int abc``, ``!!bool maybe``: PyYAML lets int(), float() or a lookup raise bare.
            value = node.value if isinstance(node, ScalarNode) else ""
            kind = node.tag.removeprefix(_TAG)
            raise RefusedYaml(node, _where(node), f"{clip(repr(value))} is not a valid {kind}") from None

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise RefusedYaml(key_node, _where(node), "a key must be a plain string or number, "
                                      f"not a {type(key).__name__}") from None
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise RefusedYaml(key_node, _where(node, key), f"duplicate key (lines {first_line[key]} and "
                                      f"{line}): YAML would keep only the last one; remove one of them")
                first_line[key] = line
        return super().construct_mapping(node, deep)

    def _number(self, node: ScalarNode, kind: str) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise RefusedYaml(node, _where(node), f"a number of {len(node.value)} characters is not a "
                              f"valid {kind} here (at most {MAX_NUMBER_CHARS})")
        if kind == "int":
            return super().construct_yaml_int(node)
        return super().construct_yaml_float(node)

    def construct_config_int(self, node: ScalarNode) -> Any:
        return self._number(node, "int")

    def construct_config_float(self, node: ScalarNode) -> Any:
        return self._number(node, "float")


_ConfigConstructor.add_constructor(f"{_TAG}int", _ConfigConstructor.construct_config_int)
_ConfigConstructor.add_constructor(f"{_TAG}float", _ConfigConstructor.construct_config_float)


def _loader_class(name: str, parser_bases: tuple[type, ...], init_parser: Any) -> type:
    def __init__(self: Any, text: str) -> None:
        init_parser(self, text)
        _ConfigComposer.__init__(self)
        _ConfigConstructor.__init__(self)
        _ConfigResolver.__init__(self)

    # The composer comes first: libyaml's CParser has its own (recursive, unchecked) composer.
    bases = (_ConfigComposer, _ConfigConstructor, _ConfigResolver, *parser_bases)
    return type(name, bases, {"__init__": __init__})


def _init_pure(loader: Any, text: str) -> None:
    Reader.__init__(loader, text)
    Scanner.__init__(loader)
    Parser.__init__(loader)


#: The same rules on the pure-Python parser (PyYAML without libyaml).
PureLoader = _loader_class("PureLoader", (Reader, Scanner, Parser), _init_pure)
try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    ConfigLoader = PureLoader
else:
    ConfigLoader = _loader_class("ConfigLoader", (CParser,), CParser.__init__)


def parse_yaml(text: str, loader: type = ConfigLoader) -> Any:
    """The one YAML document in ``text``; raises yaml.YAMLError (RefusedYaml for what we refuse)."""
    instance = loader(text)
    try:
        return instance.get_single_data()
    finally:
        instance.dispose()


def read_config_file(path: Path) -> str:
    """The text of a regular file of at most MAX_CONFIG_BYTES bytes of UTF-8; ConfigError otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read index config: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path}: cannot read index config: not a regular file")
    with os.fdopen(fd, "rb") as fh:
        try:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read index config: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: index config is larger than {MAX_CONFIG_BYTES // 1024} KiB: "
                          "an index config is a few KB; is this the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: index config is not UTF-8 text (byte {exc.start} is not)") from None


def load_config_yaml(path: Path) -> Any:
    """The data in the index config file ``path``; ConfigError naming the file (and line, field) if not."""
    text = read_config_file(path)
    try:
        return parse_yaml(text)
    except RefusedYaml as exc:
        raise ConfigError(f"{path}: {clip(str(exc), 600)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {clip(str(exc), 600)}") from None
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:  # a net: none is known
        raise ConfigError(f"{path}: not valid YAML: {type(exc).__name__}: {clip(str(exc), 200)}") from None
