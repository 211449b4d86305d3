"""griffe extension: pgjobs' docstrings are written in reST (Sphinx roles, ``::`` before
a literal block), which the API pages render as Markdown. This turns the roles into code
spans, linked when they name a public ``pgjobs`` name, and ``text::`` into ``text:``; the
indented block after it stays a code block. Prose that follows the ``:param:`` fields is
moved before them, where the Sphinx parser does not take it for the last field's
description. The docstrings themselves stay as they are, readable with ``help()``."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:meth|class|func|attr|exc|data|mod|obj|const):`~?\.?([^`]+)`")
LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)
ALONE = re.compile(r"^\s*::\n", re.MULTILINE)


def markdown(text: str, public: dict[str, str]) -> str:
    def role(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("pgjobs.")
        shown = name.rsplit(".", 1)[-1] if match.group(0).count("~") else name
        if name in public:
            return f"[`{shown}`][{public[name]}]"
        return f"`{shown}`"

    return ALONE.sub("\n", LITERAL.sub(":", ROLE.sub(role, fields_last(text))))


def fields_last(text: str) -> str:
    """The docstring's prose first, then its field list (``:param x:`` and the like), each
    in its own order; an indented paragraph stays with the one before it."""
    prose: list[str] = []
    fields: list[str] = []
    last = prose
    for paragraph in text.split("\n\n"):
        if paragraph.startswith(":"):
            last = fields
        elif not paragraph.startswith((" ", "\t")):
            last = prose
        last.append(paragraph)
    return "\n\n".join(prose + fields)


class RestToMarkdown(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        # Each exported name is documented under its own path (no public submodule
        # shares a name with one: tests/test_public_api.py holds that).
        public = {name: f"pgjobs.{name}" for name in map(str, pkg.exports or ())}
        self._convert(pkg, public, set())

    def _convert(self, obj: griffe.Object, public: dict[str, str], seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value, public)
        for member in obj.members.values():
            if not member.is_alias:
                self._convert(member, public, seen)  # type: ignore[arg-type]
