"""The web console's page and assets as the router serves them (``GET /console``, router/console_page.py), and
through the local gateway: no key to load them, a content-security policy that admits no inline script and no
other origin, links under the API's base path, and nothing but the listed files. The browser tests are in
tests/e2e/test_console.py."""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local.gateway import Gateway, LambdaContext, response_headers, to_event
from router import console_page
from router import handler as router
from tests.adapters.test_router_handler import KEY, api, router_env  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def serve(path: str, *, called: str | None = None) -> tuple[int, dict[str, str], str]:
    """The router's answer to a browser's GET (no API key); ``called``: the path with the API's base path."""
    event = to_event("GET", path, {"accept": "text/html"}, None)
    assert event is not None
    if called is not None:
        event["requestContext"]["path"] = called
    answer = router.handler(event, LambdaContext(30))
    return answer["statusCode"], response_headers(answer), answer["body"]


class Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def test_the_page_is_html_with_a_policy_that_allows_only_this_origin_and_no_inline_script():
    status, headers, page = serve("/console")

    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == policy["base-uri"] == policy["form-action"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert "Access-Control-Allow-Origin" not in headers
    found = tags(page)
    scripts = [attrs for tag, attrs in found if tag == "script"]
    assert scripts == [{"src": "/console/console.js", "defer": None}]  # the only script, from a file
    assert not [attrs for _, attrs in found if "style" in attrs or any(name.startswith("on") for name in attrs)]
    assert "<style" not in page


def test_on_a_deployed_stage_the_page_loads_its_assets_and_calls_the_api_under_the_stage():
    _, _, page = serve("/console", called="/dev/console")

    found = tags(page)
    assert ("html", {"lang": "en", "data-api": "/dev"}) in found
    assert ("script", {"src": "/dev/console/console.js", "defer": None}) in found
    assert any(tag == "link" and attrs.get("href") == "/dev/console/console.css" for tag, attrs in found)


def test_the_base_path_is_escaped_into_the_page():
    """The base path comes from the request; whatever it holds stays an attribute value."""
    _, _, page = serve("/console", called='/a"><b>/console')

    assert '<b>' not in page and 'data-api="/a&quot;&gt;&lt;b&gt;"' in page


@pytest.mark.parametrize("name", sorted(console_page.ASSETS))
def test_each_asset_is_served_with_its_type_and_the_same_policy(name):
    status, headers, text = serve(f"/console/{name}")

    assert status == 200 and headers["Content-Type"] == console_page.ASSETS[name]
    assert headers["Content-Security-Policy"] == console_page.CONTENT_SECURITY_POLICY
    assert text == (console_page.FILES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["index.html", "nope.js", "..%2Fhandler.py", "%2E%2E", "console.js.map"])
def test_nothing_but_the_listed_assets_is_served(name):
    status, headers, body = serve(f"/console/{name}")

    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "not_found"


def test_the_script_never_writes_markup():
    """The page shows tenants' data (metadata, results) that may hold markup: the script builds nodes and
    sets text, never parses HTML from strings."""
    script = (console_page.FILES / "console.js").read_text(encoding="utf-8")

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "createContextualFragment", "setTimeout('", 'setTimeout("'):
        assert sink not in script, sink
    assert not re.search(r"""fetch\(\s*['"`]https?:""", script)  # every call goes to this API


def test_importing_the_router_reads_no_console_file():
    """The console costs a cold start nothing: its files are read on the first request for them."""
    probe = "import router.handler, router.console_page as c; assert c._read.cache_info().currsize == 0"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr


# --- through the local gateway ---------------------------------------------------------------------------

@pytest.fixture
def gateway(api):
    started = Gateway(router.handler).start()
    yield started
    started.stop()


def get(gateway: Gateway, path: str, *, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(gateway.url + path, headers={"x-api-key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_local_gateway_serves_the_console_without_a_key_and_still_refuses_the_api_without_one(gateway):
    status, headers, _ = get(gateway, "/console")
    assert status == 200 and headers["Content-Security-Policy"] == console_page.CONTENT_SECURITY_POLICY
    assert get(gateway, "/console/console.js")[0] == 200

    status, _, body = get(gateway, "/v1/jobs")
    assert status == 403 and json.loads(body)["error"]["type"] == "INVALID_API_KEY"
    status, _, body = get(gateway, "/console/../v1/jobs")
    assert status == 403


def test_json_answers_are_never_sniffed_or_framed_and_allow_no_other_origin(gateway):
    status, headers, body = get(gateway, "/v1/jobs", key=KEY)

    assert status == 200 and json.loads(body) == {"jobs": [], "next_cursor": None}
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert not [name for name in headers if name.lower().startswith("access-control-")]
