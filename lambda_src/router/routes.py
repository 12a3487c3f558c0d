"""The API's routes, in one place: the router serves them, API Gateway (the CDK app) and the local
gateway expose exactly these. ``{id}`` is API Gateway's path-parameter syntax."""

ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("GET", "/v1/jobs/{id}/deliveries"),
    ("POST", "/v1/jobs/{id}/deliveries"),
    ("GET", "/v1/usage"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/capacity"),
    ("POST", "/v1/uploads"),
    ("GET", "/v1/openapi.json"),
)

# The web console (router/console_page.py): a page and its assets for a browser, which sends no API key to load
# them, so these are the API's only routes without one. Every call the page makes goes to ROUTES with the key.
CONSOLE_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/console"),
    ("GET", "/console/{asset}"),
)
