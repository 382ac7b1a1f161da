"""The browser pages' shared files: ``page.html`` (the one page, filled in by :func:`render`), ``draw.js`` (the
drawing and the inputs), ``style.css``, ``favicon.svg``; and ``web.js``, the page of ``ssdlite export --format
web``. ``ssdlite serve`` serves this folder under ``/page/`` beside its own ``app.js``."""

from __future__ import annotations

from pathlib import Path
from string import Template

FOLDER = Path(__file__).resolve().parent


def render(title: str, script: str, loading: str, footer: str, before_controls: str = "", page: str = "") -> str:
    """``page.html`` filled in: ``script`` the page's own ``<script>`` tag, ``page`` the URL prefix of this folder's
    files (``/page/`` in serve, empty beside the exported page)."""
    template = Template((FOLDER / "page.html").read_text(encoding="utf-8"))
    return template.substitute(title=title, script=script, loading=loading, footer=footer, before_controls=before_controls, page=page)
