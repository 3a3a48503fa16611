"""MkDocs hooks: include files from the repository, generate the CLI reference, and refuse what the
documentation must not contain (strict mode turns these warnings into errors).

- ``<!-- include: PATH -->`` on a line of its own is replaced by the file PATH (relative to the
  repository root): the model cards and the LAMMPS plugin README are kept where the code needs them
  and shown here as they are.
- ``<!-- cli-reference -->`` is replaced by the ``--help`` of every ``fpscf`` subcommand.
- A link to anything outside the repository (http, https, mailto, ``../`` beyond the docs), a mention
  of notes kept outside the repository or of internal issue letters is a warning.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.hooks.fpscf")

INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.MULTILINE)
FORBIDDEN = [
    (re.compile(r"\]\((?:https?:|mailto:|//)|<https?://|\bhref=\"https?:"), "a link outside the repository"),
    (re.compile(r"DESIGN\.md|\.\./shared|\bshared/"), "a reference to notes outside the repository"),
    (re.compile(r"\b[Ii]ssues? [A-Z](?:\b|/)"), "an internal issue letter"),
]


def _cli_reference() -> str:
    from fpscf.cli import build_parser

    parser = build_parser()
    sections = ["```text\n" + parser.format_help().rstrip() + "\n```"]

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for name, sub in action.choices.items():
                    command = f"{prefix} {name}"
                    sections.append(f"## `{command}`\n\n```text\n{sub.format_help().rstrip()}\n```")
                    walk(sub, command)

    walk(parser, "fpscf")
    return "\n\n".join(sections)


def _check(text: str, where: str) -> None:
    for pattern, what in FORBIDDEN:
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            log.warning(f"{where}:{line}: {what}: {match.group(0)!r}")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001
    def include(match: re.Match) -> str:
        path = ROOT / match.group(1)
        if not path.is_file():
            log.warning(f"{page.file.src_uri}: include of a missing file {match.group(1)}")
            return ""
        return path.read_text(encoding="utf-8")

    markdown = INCLUDE.sub(include, markdown)
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", _cli_reference())
    _check(markdown, page.file.src_uri)
    return markdown


def on_page_content(html: str, page, config, files) -> str:  # noqa: ANN001
    if page.file.src_uri == "api.md":  # rendered docstrings: the same rules
        _check(re.sub(r"<[^>]+>", " ", html), page.file.src_uri)
        _check(html, page.file.src_uri + " (links)")
    return html


def on_post_page(output: str, page, config) -> str:  # noqa: ANN001
    """The whole page, theme included, loads and links nothing outside the site."""
    for match in re.finditer(r'(?:src|href)="(?:https?:)?//[^"]*"', output):
        log.warning(f"{page.file.src_uri}: the built page refers outside the site: {match.group(0)}")
    return output
