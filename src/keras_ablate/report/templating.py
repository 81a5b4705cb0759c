"""The one Jinja environment factory for report templates, with an explicit HTML or Markdown switch.

HTML: every variable is HTML-escaped (autoescape). Markdown is not HTML: a variable is printed
as text, with only what would start raw HTML neutralized (a '<' that opens a tag, comment or
declaration, and an '&' that starts an entity), so a hostile name cannot inject markup while
"A < B", quotes and apostrophes print as they are (HTML-escaping every variable printed
"runs&#39; min-max range" in report.md). Both reports (report/render.py and claims/report.py)
get their environments here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from jinja2 import Environment, PackageLoader

Output = Literal["html", "markdown"]
# What CommonMark reads as raw HTML or a character reference, the only things escaped in Markdown.
_TAG_OPENER = re.compile(r"<(?=[A-Za-z/!?])")
_REFERENCE = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


def environment(output: Output, filters: dict[str, Callable] | None = None) -> Environment:
    """A Jinja environment over keras_ablate/report/templates for one kind of output.

    Args:
        output: 'html' (autoescape) or 'markdown' (raw HTML neutralized, text kept as it is).
        filters: extra template filters by name (number formats); Markdown environments also
            get `md`, which keeps a value inside one table cell.
    """
    if output not in ("html", "markdown"):
        raise ValueError(f"output must be 'html' or 'markdown', got {output!r}")
    env = Environment(
        loader=PackageLoader("keras_ablate.report", "templates"),
        autoescape=output == "html",
        finalize=None if output == "html" else markdown_text,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    if output == "markdown":
        env.filters["md"] = markdown_cell
    env.filters.update(filters or {})
    return env


def markdown_text(value) -> str:
    """A value printed into Markdown as text: '<' before a tag name, '/', '!' or '?' becomes &lt;
    and '&' before an entity becomes &amp; (no raw HTML); everything else is left as it is."""
    return _TAG_OPENER.sub("&lt;", _REFERENCE.sub("&amp;", str(value)))


def markdown_cell(value) -> str:
    """Keep a user string inside one Markdown table cell: no pipes or line breaks."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
