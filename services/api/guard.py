"""Who may use the API how much: per-token REST rate limit, a cap on concurrent feed
connections per token, and closing open feeds whose token was revoked, expired or
rotated.

Plain Python (no FastAPI import): the routes call it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from prometheus_client import Counter as PromCounter

from services.api.feeds import Subscriber
from services.common.auth import Principal, TokenStore

log = logging.getLogger(__name__)

FEEDS_REFUSED = PromCounter(
    "bw_api_feed_connections_refused_total",
    "Feed connections refused because their token already had the most allowed",
)
FEEDS_REVOKED = PromCounter(
    "bw_api_feed_connections_revoked_total",
    "Open feed connections closed because their token was revoked, expired or rotated",
)

REST_RATE_LIMITED = PromCounter(
    "bw_api_rate_limited_total", "REST requests refused with 429 (token over its rate)"
)

# How often open feeds' tokens are checked: a revoked token's feeds close within this
# plus the token store's reload period (1 s).
CHECK_SECONDS = 1.0


class FeedGuard:
    """The open feed connections of one API process, by token."""

    def __init__(self, tokens: TokenStore, max_per_token: int, auth_enabled: bool) -> None:
        self._tokens = tokens
        self.max_per_token = max_per_token
        # With auth off every client is "anonymous": there is no token to cap by.
        self._auth_enabled = auth_enabled
        self._open: dict[Subscriber, Principal] = {}
        self._per_token: Counter[str] = Counter()
        self._refused: set[Subscriber] = set()

    def admit(self, principal: Principal) -> bool:
        """Whether ``principal`` may open one more feed connection."""
        if not self._auth_enabled or self.max_per_token <= 0:
            return True
        if self._per_token[principal.token_id] >= self.max_per_token:
            FEEDS_REFUSED.inc()
            return False
        return True

    def opened(self, sub: Subscriber, principal: Principal) -> None:
        self._open[sub] = principal
        self._per_token[principal.token_id] += 1

    def closed(self, sub: Subscriber) -> None:
        principal = self._open.pop(sub, None)
        self._refused.discard(sub)
        if principal is not None:
            self._per_token[principal.token_id] -= 1
            if self._per_token[principal.token_id] <= 0:
                del self._per_token[principal.token_id]

    def token_refused(self, sub: Subscriber) -> bool:
        """Whether ``sub`` was closed because its token is no longer valid."""
        return sub in self._refused

    def check(self) -> int:
        """Close the feeds whose token is no longer accepted; how many."""
        if not self._auth_enabled:
            return 0
        self._tokens.refresh()
        closed = 0
        for sub, principal in list(self._open.items()):
            if sub not in self._refused and not self._tokens.is_current(principal):
                self._refused.add(sub)
                sub.close()
                closed += 1
        if closed:
            FEEDS_REVOKED.inc(closed)
            log.info("closed %d feed connections whose token is no longer valid", closed)
        return closed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                self.check()
                self._tokens.maybe_flush()
            except Exception:  # never let the guard die silently
                log.exception("feed guard check failed")
