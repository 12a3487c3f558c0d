"""The web console (``GET /console``): one static page and its script and style, from ``router/console/``.

The files are read on the first request for them, never at import: a cold start that serves the API pays
nothing for the console. The page is the same for every visitor (the visitor's API key is entered in the
page and kept in the tab's ``sessionStorage``); only the API's base path is written into it, so that its
assets and every call it makes go to this API however it is mounted (a stage, a custom domain's mapping).
"""

from __future__ import annotations

import functools
import html
from pathlib import Path

FILES = Path(__file__).resolve().parent / "console"
PAGE = "index.html"
# The assets by name, with their content types: the only files ``/console/{asset}`` serves.
ASSETS: dict[str, str] = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
PAGE_TYPE = "text/html; charset=utf-8"
BASE_MARK = "{{base}}"

# Everything from this origin only, and no inline script or style: the page shows tenants' own data, which
# may hold markup; were any of it ever rendered as markup, it still could not run. No framing; no form
# submitted by the browser itself (the script sends each, so a key typed in a form never lands in a URL).
# connect-src 'self': the page calls only this API, so the API needs no CORS at all.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidated on every load: a deploy's new console is picked up at once, and nothing of it is private.
    "Cache-Control": "no-cache",
}


@functools.cache
def _read(name: str) -> str:
    return (FILES / name).read_text(encoding="utf-8")


def page(base_path: str) -> str:
    """The page, its links under ``base_path`` (``/dev``, or empty where the API is served at the root)."""
    return _read(PAGE).replace(BASE_MARK, html.escape(base_path, quote=True))


def asset(name: str) -> tuple[str, str] | None:
    """``(content type, text)`` of a console asset; None for any other name (a path never reaches the disk)."""
    content_type = ASSETS.get(name)
    return None if content_type is None else (content_type, _read(name))
