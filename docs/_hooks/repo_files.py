"""mkdocs hook: links from the docs to files elsewhere in the repository lead somewhere.

The pages link to ``../README.md``, ``../examples/app.py``, ``../bench/README.md``: files
a reader of the repository can open, but outside ``docs/``, where mkdocs reports such a
link as broken. This hook copies each linked file that exists into the site under
``repo/`` (a Markdown file becomes a page there, and its own links are followed the same
way) and points the links at the copies. A link to a file that does not exist is left as
it is, so ``mkdocs build --strict`` still fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
PREFIX = "repo/"


def _repo(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _repo_path(src_uri: str) -> str:
    """Where a site file comes from, relative to the repository root."""
    return src_uri[len(PREFIX) :] if src_uri.startswith(PREFIX) else f"docs/{src_uri}"


def _site_uri(repo_path: str) -> str:
    return repo_path[len("docs/") :] if repo_path.startswith("docs/") else PREFIX + repo_path


def _targets(src_uri: str, markdown: str) -> list[tuple[str, str]]:
    """(link as written, repository path it names) for each relative link of a page."""
    found = []
    for _, target, _ in LINK.findall(FENCE.sub("", markdown)):
        if "://" in target or target.startswith(("mailto:", "/")):
            continue
        here = posixpath.dirname(_repo_path(src_uri))
        found.append((target, posixpath.normpath(posixpath.join(here, target))))
    return found


def on_files(files: Files, config: Any) -> Files:
    repo = _repo(config)
    todo = list(files.documentation_pages())
    while todo:
        page = todo.pop()
        for _, path in _targets(page.src_uri, Path(str(page.abs_src_path)).read_text()):
            source = repo / path
            if path.startswith(("docs/", "../")) or not source.is_file():
                continue
            if files.get_file_from_path(PREFIX + path) is None:
                added = File.generated(config, PREFIX + path, abs_src_path=str(source))
                files.append(added)
                if added.is_documentation_page():
                    todo.append(added)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(2)
        if "://" in target or target.startswith(("mailto:", "/")):
            return match.group(0)
        path = posixpath.normpath(
            posixpath.join(posixpath.dirname(_repo_path(page.file.src_uri)), target)
        )
        uri = _site_uri(path)
        if files.get_file_from_path(uri) is None:
            return match.group(0)  # mkdocs reports it
        return match.group(1) + posixpath.relpath(uri, here or ".") + match.group(3)

    # Code blocks keep their text as written.
    parts, last = [], 0
    for fence in FENCE.finditer(markdown):
        parts.append(LINK.sub(rewrite, markdown[last : fence.start()]))
        parts.append(fence.group(0))
        last = fence.end()
    parts.append(LINK.sub(rewrite, markdown[last:]))
    return "".join(parts)
