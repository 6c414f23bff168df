"""The environment the service's own commands get: the pipeline's, minus its credentials.

build, test, integration and serve run code the pipeline does not control (the
service's tests and their dependencies). They get the shell's environment without
AWS credentials, session tokens, CI identity tokens, the Honeycomb key, and any
variable whose name says it holds a secret. `pass_env` in [tool.pipeline] names
variables a service's commands really need (they pass even when they look secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Variables that are, or lead to, the pipeline's credentials.
CREDENTIALS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "HONEYCOMB_API_KEY",
        "CIRCLE_OIDC_TOKEN",
        "CIRCLE_OIDC_TOKEN_V2",
    }
)
# Names that say "secret" whatever their prefix: GITHUB_TOKEN, DB_PASSWORD, NPM_AUTH_TOKEN...
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)


def withheld(name: str) -> bool:
    return name in CREDENTIALS or bool(_SECRET_NAME.search(name))


def for_service(environ: Mapping[str, str], pass_env: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without what the service's commands must not see; `pass_env` passes."""
    passed = set(pass_env)
    return {k: v for k, v in environ.items() if k in passed or not withheld(k)}
