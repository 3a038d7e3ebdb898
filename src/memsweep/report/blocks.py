"""The report as a list of blocks (heading, paragraph, list, table, image), rendered to
Markdown and to a self-contained HTML page (PNGs inlined as base64, no external file,
script or style sheet)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from memsweep.report.plots import Plot


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    plot: Plot


Block = Heading | Para | Bullets | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Para):
            out.append(block.text + "\n")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items) + "\n")
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        else:
            out.append(f"![{block.plot.title}]({block.plot.name})\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{background:#f3f3f3;padding:0 .2em} img{max-width:100%}
"""


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline_code(text: str) -> str:
    """Markdown's inline code and bold, as HTML (the report's text uses only these)."""
    parts = html.escape(text).split("`")
    return "".join(
        f"<code>{p}</code>" if i % 2 else _BOLD.sub(r"<strong>\1</strong>", p)
        for i, p in enumerate(parts)
    )


def to_html(blocks: list[Block], folder: Path, title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline_code(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append(
                "<ul>" + "".join(f"<li>{_inline_code(i)}</li>" for i in block.items) + "</ul>"
            )
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            data = base64.b64encode((folder / block.plot.name).read_bytes()).decode("ascii")
            out.append(
                f"<img alt='{html.escape(block.plot.title)}' src='data:image/png;base64,{data}'>"
            )
    out.append("</body></html>")
    return "\n".join(out)
