"""Where the API is and which key to send: arguments, then the environment (``JOBPIPE_API_URL``,
``JOBPIPE_API_KEY``), then the config file ``jobpipe configure`` writes
(``$JOBPIPE_CONFIG``, else ``$XDG_CONFIG_HOME/jobpipe/config.json``, else ``~/.config/jobpipe/config.json``;
mode 0600: it holds the key)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobpipe.errors import JobpipeError

URL_VARIABLE = "JOBPIPE_API_URL"
KEY_VARIABLE = "JOBPIPE_API_KEY"
CONFIG_VARIABLE = "JOBPIPE_CONFIG"


class ConfigurationError(JobpipeError):
    """No API URL or key was given, or the config file cannot be read."""


@dataclass(frozen=True)
class Settings:
    api_url: str
    api_key: str
    source: str  # where they came from, for messages: "arguments", "environment", the file's path


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_VARIABLE):
        return Path(env[CONFIG_VARIABLE]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "jobpipe" / "config.json"


def read_config(path: Path) -> dict[str, Any]:
    """The config file's settings; empty when there is none."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read the config file {path}: {error}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"the config file {path} is not a JSON object")
    return document


def write_config(path: Path, settings: Mapping[str, Any]) -> None:
    """Write the settings, readable by the owner only (it holds the API key), replacing the file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".tmp")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(dict(settings), file, indent=2)
        file.write("\n")
    os.chmod(staged, 0o600)  # an existing file kept its mode through O_CREAT
    os.replace(staged, path)


def resolve(api_url: str | None = None, api_key: str | None = None, *,
            environ: Mapping[str, str] | None = None) -> Settings:
    """The API URL and key: each from the arguments, else the environment, else the config file."""
    env = os.environ if environ is None else environ
    url, key = api_url or env.get(URL_VARIABLE) or None, api_key or env.get(KEY_VARIABLE) or None
    source = "arguments" if api_url or api_key else "environment"
    if url is None or key is None:
        path = config_path(env)
        stored = read_config(path)
        url = url or stored.get("api_url")
        key = key or stored.get("api_key")
        if stored:
            source = str(path)
    if not url or not key:
        missing = " and ".join(name for name, value in ((URL_VARIABLE, url), (KEY_VARIABLE, key)) if not value)
        raise ConfigurationError(
            f"no API {'URL' if not url else 'key'}{' or key' if not url and not key else ''}: set {missing}, "
            f"or run `jobpipe configure --stack <service stack>` after cdk deploy (writes {config_path(env)})")
    return Settings(api_url=str(url), api_key=str(key), source=source)
