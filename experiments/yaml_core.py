"""A YAML loader for experiment files: YAML 1.2's core schema, nothing more.

PyYAML's safe loader resolves YAML 1.1's types, and some of them are traps in a file
anyone on the team can submit: ``!!binary`` carries NUL and ESC into names past the
control-character check (bytes, not text); sexagesimal integers (``1:0:0:...``) turn
a 256 KB value into a number of hundreds of thousands of digits in about a second;
``yes``/``no``/``on``/``off`` become booleans and ``2001-12-14`` a date. Here a plain
scalar is null, a boolean, an integer or a float only in the core schema's spelling
(the same as JSON's, plus ``0o``/``0x`` integers and ``.inf``/``.nan``), and text
otherwise. Explicit tags (``!!binary``, ``!!int``, ``!name``) are refused by
``experiments.expfile`` before anything is built.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import BaseResolver

#: libyaml's parser when present: PyYAML's pure-Python scanner is quadratic on some
#: inputs (a long flow list took seconds); the C one reads 256 KiB in milliseconds.
_Parser: Any
try:
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _Parser = None

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

_DIGITS: list[str | None] = list("-+0123456789")
_CORE: list[tuple[str, re.Pattern[str], list[str | None]]] = [
    (_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    (_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), _DIGITS),
    (
        _FLOAT,
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        [*_DIGITS, "."],
    ),
]


class CoreResolver(BaseResolver):
    """Plain scalars resolve by the core schema's patterns only."""


for _tag, _pattern, _first in _CORE:
    CoreResolver.add_implicit_resolver(_tag, _pattern, _first)


class CoreConstructor(SafeConstructor):
    """Builds the core schema's types; any other tag is an error."""

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)  # "017" is seventeen here, not YAML 1.1's octal 15

    def construct_other(self, node: yaml.Node) -> Any:
        raise ConstructorError(None, None, f"the tag {node.tag!r} is not allowed", node.start_mark)


CoreConstructor.yaml_constructors = {}
_method: Any
for _tag, _method in (
    (_NULL, SafeConstructor.construct_yaml_null),
    (_BOOL, SafeConstructor.construct_yaml_bool),
    (_INT, CoreConstructor.construct_core_int),
    (_FLOAT, SafeConstructor.construct_yaml_float),
    (_STR, SafeConstructor.construct_yaml_str),
    (_SEQ, SafeConstructor.construct_yaml_seq),
    (_MAP, SafeConstructor.construct_yaml_map),
):
    CoreConstructor.add_constructor(_tag, _method)
_method = CoreConstructor.construct_other  # any other tag
CoreConstructor.add_constructor(None, _method)


if _Parser is not None:

    class CoreLoader(_Parser, CoreConstructor, CoreResolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            CoreConstructor.__init__(self)
            CoreResolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class CoreLoader(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        CoreConstructor,
        CoreResolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            CoreConstructor.__init__(self)
            CoreResolver.__init__(self)
