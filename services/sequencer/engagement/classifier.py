"""Tell human opens and clicks from machine opens and bot clicks.

An open is a machine open when the provider flagged it (e.g. SendGrid `sg_machine_open`) or Apple
Mail Privacy Protection fetched the pixel. The MPP proxy sends the bare `Mozilla/5.0` user agent, or
comes from Apple's address range. Opens from a scanner or script user agent, and opens from the
address of a link scanner during its burst, are machine opens too. Apple Mail opened by a person sends a full WebKit user agent
(`Mozilla/5.0 (Macintosh; ...) AppleWebKit/605.1.15 (KHTML, like Gecko)`), which stays human. Bot clicks: a scanner or script user agent, a click within seconds
of delivery, or several different links (the unsubscribe link included) hit within a few seconds.

Classify all hits of one message together: a burst is only visible across hits, so a click that
looked human alone can turn out to be part of one when the next hits arrive. Re-run the
classification for the message on each new hit inside `burst_window` and store the verdicts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from services.sequencer.schedule.local_time import require_aware

HitKind = Literal["open", "click"]

# Case-insensitive patterns for user agents of mail security scanners, link checkers, crawlers and
# HTTP libraries. "bot" must end a word or precede a version, so phone models such as "CUBOT X30" in
# Android user agents stay human.
SCANNER_USER_AGENT_PATTERNS: tuple[str, ...] = (
    r"bot[/;)-]", r"bot$", r"[\s(;-]bot\b", r"crawl", r"spider", r"scanner", r"barracuda", r"proofpoint",
    r"mimecast", r"safelinks", r"urldefense", r"messagelabs", r"symantec", r"trendmicro", r"fortinet",
    r"sophos", r"forcepoint", r"zscaler", r"ironport", r"headlesschrome", r"phantomjs", r"python-requests",
    r"python-urllib", r"aiohttp", r"python-httpx", r"curl/", r"wget/", r"go-http-client", r"^java/",
    r"okhttp", r"libwww", r"apache-httpclient", r"node-fetch", r"axios/",
)
# Apple Inc. owns 17.0.0.0/8, and Mail Privacy Protection prefetches from Apple-operated addresses.
# NOTE: Apple publishes no definitive list of its MPP proxy ranges, so this is an approximation;
# deployments can pass their own list in BotRules.apple_proxy_networks.
APPLE_PROXY_NETWORKS: tuple[str, ...] = ("17.0.0.0/8",)
_BARE_MOZILLA = re.compile(r"^\s*Mozilla/5\.0\s*$")


class Verdict(StrEnum):
    """Origin of a hit: a person, a machine fetch (opens) or a bot (clicks)."""

    HUMAN = "human"
    MACHINE = "machine"
    BOT = "bot"


@dataclass(frozen=True)
class TrackingHit:
    """One open (pixel fetch or provider open event) or click of a message."""

    kind: HitKind
    occurred_at: datetime
    user_agent: str | None = None
    ip: str | None = None
    url: str | None = None
    provider_machine_open: bool = False


@dataclass(frozen=True)
class ClassifiedHit:
    """A hit with its verdict and the rules that decided it (empty for human)."""

    hit: TrackingHit
    verdict: Verdict
    reasons: tuple[str, ...] = ()

    @property
    def human(self) -> bool:
        """Whether the hit counts in human metrics and scores."""
        return self.verdict is Verdict.HUMAN


@dataclass(frozen=True)
class BotRules:
    """Thresholds of the classifier; the defaults follow common practice among email platforms."""

    burst_window: timedelta = timedelta(seconds=10)
    burst_min_distinct_links: int = 3
    min_click_delay: timedelta = timedelta(seconds=5)
    scanner_patterns: tuple[str, ...] = SCANNER_USER_AGENT_PATTERNS
    apple_proxy_networks: tuple[str, ...] = APPLE_PROXY_NETWORKS
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False, repr=False)
    _scanner: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        networks = tuple(ipaddress.ip_network(network) for network in self.apple_proxy_networks)
        object.__setattr__(self, "_networks", networks)
        object.__setattr__(self, "_scanner", re.compile("|".join(self.scanner_patterns), re.IGNORECASE))

    def in_apple_proxy(self, ip: str | None) -> bool:
        """Return whether `ip` lies in one of the Apple proxy networks."""
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def scanner_agent(self, user_agent: str | None) -> bool:
        """Return whether the user agent names a scanner, crawler or HTTP library."""
        return bool(user_agent) and self._scanner.search(user_agent.strip()) is not None


DEFAULT_RULES = BotRules()


def classify_hits(
    hits: Sequence[TrackingHit],
    *,
    delivered_at: datetime | None,
    rules: BotRules = DEFAULT_RULES,
) -> list[ClassifiedHit]:
    """Classify every open and click of one message, in the order given.

    `delivered_at` is the delivery instant (provider event, or SMTP acceptance); None when unknown,
    which disables the timing rules.
    """
    delivered = require_aware(delivered_at, "delivered_at") if delivered_at is not None else None
    burst_hits = _burst_members(hits, rules)
    burst_ips = {hits[index].ip for index in burst_hits if hits[index].ip}

    result = []
    for index, hit in enumerate(hits):
        if hit.kind == "click":
            reasons = _click_reasons(hit, index in burst_hits, delivered, rules)
            verdict = Verdict.BOT if reasons else Verdict.HUMAN
        else:
            reasons = _open_reasons(hit, burst_ips, rules)
            verdict = Verdict.MACHINE if reasons else Verdict.HUMAN
        result.append(ClassifiedHit(hit, verdict, tuple(reasons)))
    return result


def _click_reasons(hit: TrackingHit, in_burst: bool, delivered: datetime | None, rules: BotRules) -> list[str]:
    reasons = []
    if rules.scanner_agent(hit.user_agent):
        reasons.append("scanner_user_agent")
    if not (hit.user_agent or "").strip():
        reasons.append("no_user_agent")
    if in_burst:
        reasons.append("link_burst")
    if delivered is not None and require_aware(hit.occurred_at, "occurred_at") - delivered < rules.min_click_delay:
        reasons.append("too_soon_after_delivery")
    return reasons


def _open_reasons(hit: TrackingHit, burst_ips: set[str | None], rules: BotRules) -> list[str]:
    reasons = []
    if hit.provider_machine_open:
        reasons.append("provider_machine_open")
    if rules.scanner_agent(hit.user_agent):
        reasons.append("scanner_user_agent")
    if not (hit.user_agent or "").strip():
        reasons.append("no_user_agent")
    if hit.ip and hit.ip in burst_ips:
        reasons.append("scanner_address")
    if _BARE_MOZILLA.match(hit.user_agent or ""):
        reasons.append("bare_user_agent")
    if rules.in_apple_proxy(hit.ip):
        reasons.append("apple_privacy_proxy")
    return reasons


def _burst_members(hits: Sequence[TrackingHit], rules: BotRules) -> set[int]:
    """Return the indexes of clicks that fall in a burst of distinct links within `burst_window`."""
    clicks = sorted(
        (require_aware(hit.occurred_at, "occurred_at"), index, hit.url or "")
        for index, hit in enumerate(hits)
        if hit.kind == "click"
    )
    members: set[int] = set()
    start = 0
    for end in range(len(clicks)):
        while clicks[end][0] - clicks[start][0] > rules.burst_window:
            start += 1
        window = clicks[start : end + 1]
        if len({url for _, _, url in window}) >= rules.burst_min_distinct_links:
            members.update(index for _, index, _ in window)
    return members


@dataclass(frozen=True)
class HitCounts:
    """Opens and clicks of one message, split by verdict, for `MessageEngagement`."""

    human_opens: int = 0
    machine_opens: int = 0
    human_clicks: int = 0
    bot_clicks: int = 0


def count_hits(classified: Sequence[ClassifiedHit]) -> HitCounts:
    """Count classified hits by kind and verdict."""
    human_opens = sum(1 for item in classified if item.hit.kind == "open" and item.human)
    human_clicks = sum(1 for item in classified if item.hit.kind == "click" and item.human)
    opens = sum(1 for item in classified if item.hit.kind == "open")
    clicks = len(classified) - opens
    return HitCounts(human_opens, opens - human_opens, human_clicks, clicks - human_clicks)
