"""What only the person at the command line may allow, never a spec (which may come from
someone else): running code from a model's repository (``--trust-remote-code``) and
sending the value of a variable that does not look like an API key (``--allow-key-env``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowundo_bench.core.errors import InputError

# A variable that names an API key: ends in _API_KEY, _KEY or _TOKEN, and is not one of the
# credentials a machine commonly holds for something else (cloud, CI, package and code hosts).
API_KEY_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*(?:_API_KEY|_KEY|_TOKEN)$")
NOT_AN_API_KEY = re.compile(
    r"SECRET|PASSWORD|PASSWD|PRIVATE|SESSION|ACCESS_KEY|^(?:AWS|AZURE|GCP|GOOGLE_APPLICATION|GITHUB|GH|GITLAB|"
    r"CI|ACTIONS|NPM|PYPI|TWINE|DOCKER|SSH|GPG|VAULT|KUBE|HEROKU|NETLIFY|VERCEL|SLACK|STRIPE)_"
)


@dataclass(frozen=True)
class Granted:
    """Permissions given on the command line for this invocation."""

    trust_remote_code: bool = False
    key_envs: frozenset[str] = frozenset()  # --allow-key-env NAME, each


def check_remote_code(params: object, field: str, granted: Granted) -> None:
    """``params`` that ask for ``trust_remote_code`` need ``--trust-remote-code`` too."""
    if getattr(params, "trust_remote_code", False) is True and not granted.trust_remote_code:
        raise InputError(
            f"{field}.trust_remote_code: a spec alone cannot run code from a model's repository; "
            "pass --trust-remote-code as well if you trust that code"
        )


def check_key_variable(name: str, field: str, granted: Granted) -> None:
    """``name`` looks like an API key variable, or ``--allow-key-env NAME`` allows it: a
    shared spec must not send, say, ``AWS_SECRET_ACCESS_KEY`` to its own server."""
    if name in granted.key_envs or (API_KEY_VARIABLE.match(name) and not NOT_AN_API_KEY.search(name)):
        return
    raise InputError(
        f"{field}: {name} does not look like an API key variable (…_API_KEY, …_KEY or …_TOKEN, and no "
        f"cloud, CI or other credential); if its value is the endpoint's key, pass --allow-key-env {name}"
    )
