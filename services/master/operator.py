"""The operator views' token check: /metrics and /api/status (`Authorization: Bearer <token>`) and the dashboard's
Socket.IO connection (auth `{dashboard: true, token}`) need the master's OPERATOR_TOKEN.

Tokens are compared in constant time and never logged or echoed."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

# What a refusal says, by reason. None of them repeats what was presented.
NOT_CONFIGURED = (
    "operator views are off: this master has no operator token; set OPERATOR_TOKEN (or OPERATOR_TOKEN_FILE, "
    "a Docker secret) and restart it"
)
MISSING = "operator token required: send `Authorization: Bearer <token>` (the master's OPERATOR_TOKEN)"
WRONG = "operator token refused: it is not this master's OPERATOR_TOKEN"
# What the dashboard page shows when its connection is refused for want of the right token.
DASHBOARD_MISSING = "operator token required: open the URL `lab up` printed (/dashboard#token=...)"
DASHBOARD_WRONG = "operator token refused: open the URL `lab up` printed (/dashboard#token=...)"
# The HTTP challenge of a 401 (RFC 6750).
CHALLENGE = 'Bearer realm="operator"'


@dataclass(frozen=True)
class Refusal:
    """Why an operator request is refused: the HTTP status (401 without or with a wrong token, 403 when the master
    has none) and the message."""

    status: int
    message: str


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none or it is another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_token(presented: str, configured: str) -> bool:
    """Whether `presented` is `configured`, compared in constant time (for tokens of equal length)."""
    return hmac.compare_digest(presented.encode("utf-8"), configured.encode("utf-8"))


def check(configured: str | None, presented: str | None) -> Refusal | None:
    """None when `presented` is the operator token; otherwise why not."""
    if not configured:
        return Refusal(403, NOT_CONFIGURED)
    if not presented:
        return Refusal(401, MISSING)
    if not same_token(presented, configured):
        return Refusal(401, WRONG)
    return None


def dashboard_refusal(configured: str | None, auth: object) -> str | None:
    """None when a dashboard's Socket.IO auth (`{dashboard: true, token}`) carries the operator token; otherwise
    what its page shows."""
    token = auth.get("token") if isinstance(auth, dict) else None
    refused = check(configured, token if isinstance(token, str) else None)
    if refused is None:
        return None
    if refused.status == 403:
        return refused.message
    return DASHBOARD_MISSING if refused.message == MISSING else DASHBOARD_WRONG
