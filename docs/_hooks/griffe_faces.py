"""griffe extension: the API page shows each ``pgjobs.admin`` operation as the two
functions it is. The module makes them at import time from one implementation
(``why, why_async = _faces(_why)``), which static analysis cannot follow; this reads
those assignments and documents ``why`` and ``why_async`` with ``_why``'s docstring and
parameters, a ``conn`` first, and its ``Op[T]`` return type as ``T``."""

from __future__ import annotations

import ast
from typing import Any

import griffe


class OperationFaces(griffe.Extension):
    def on_module_members(
        self, *, node: ast.AST | griffe.ObjectNode, mod: griffe.Module, **kwargs: Any
    ) -> None:
        if not isinstance(node, ast.Module):
            return
        for statement in node.body:
            faces = _faces(statement)
            if faces is None:
                continue
            build = mod.members.get(faces[2])
            if not isinstance(build, griffe.Function):
                continue
            for name, is_async in ((faces[0], False), (faces[1], True)):
                mod.set_member(name, _face(build, name, is_async, statement))


def _faces(statement: ast.stmt) -> tuple[str, str, str] | None:
    """(sync name, async name, implementation) of ``a, b = _faces(_impl, ...)``."""
    if not (
        isinstance(statement, ast.Assign)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id == "_faces"
        and isinstance(statement.value.args[0], ast.Name)
        and isinstance(statement.targets[0], ast.Tuple)
    ):
        return None
    sync, asynchronous = (target.id for target in statement.targets[0].elts)  # type: ignore[attr-defined]
    return sync, asynchronous, statement.value.args[0].id


def _face(
    build: griffe.Function, name: str, is_async: bool, statement: ast.stmt
) -> griffe.Function:
    conn = griffe.Parameter("conn", annotation="Any", kind=griffe.ParameterKind.positional_only)
    returns = build.returns
    if isinstance(returns, griffe.ExprSubscript):  # Op[T]
        returns = returns.slice
    face = griffe.Function(
        name,
        lineno=statement.lineno,
        endlineno=statement.end_lineno,
        parameters=griffe.Parameters(conn, *build.parameters),
        returns=returns,
        docstring=None if build.docstring is None else griffe.Docstring(build.docstring.value),
    )
    if is_async:
        face.labels.add("async")
    return face
