"""Strict checks of the two URLs an SNS message asks us to visit.

The SNS signature does not cover `SigningCertURL`, so an attacker can point it at a certificate
of their own. Only an HTTPS URL on an SNS host of amazonaws.com (or amazonaws.com.cn) is ever
fetched. The checks run on the raw text before any URL parser reads it, so parser differences
(userinfo, backslashes, ports, IP literals, trailing dots) cannot smuggle in another host.
"""

import re

import httpx

from .errors import RejectionCode, WebhookRejected

# Covers commercial, GovCloud and China regions, as the AWS SDK message validators do.
_SNS_HOST = re.compile(r"sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(?:\.cn)?")
_CERTIFICATE_PATH = re.compile(r"/[A-Za-z0-9._~/-]*\.pem")
_SCHEME = "https://"
_AUTHORITY_END = re.compile(r"[/?#\\]")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")


def _reject(code: RejectionCode, field: str, url: str, problem: str) -> WebhookRejected:
    displayed_url = url if len(url) <= 200 else url[:200] + "..."
    return WebhookRejected(403, f"{field} {displayed_url!r} {problem}", code=code)


def _split_sns_url(url: str, *, field: str, code: RejectionCode) -> tuple[str, str]:
    if not url.startswith(_SCHEME):
        raise _reject(code, field, url, "does not use https")

    rest = url[len(_SCHEME) :]
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    if not _SNS_HOST.fullmatch(authority):
        raise _reject(code, field, url, "is not on an SNS host sns.<region>.amazonaws.com[.cn]")
    if not _PRINTABLE_ASCII.fullmatch(tail) or "\\" in tail:
        raise _reject(code, field, url, "contains spaces, control or non-ASCII characters")

    # A second opinion from the parser that will make the request.
    parsed = httpx.URL(url)
    same_host = parsed.host == authority.lower()
    if parsed.scheme != "https" or not same_host or parsed.port is not None or parsed.userinfo:
        raise _reject(code, field, url, "does not parse to the expected https host")
    return authority, tail


def validate_signing_cert_url(url: str) -> str:
    """Return `url` if it may be fetched as an SNS signing certificate; else raise 403."""
    code = RejectionCode.INVALID_CERTIFICATE_URL
    _, path = _split_sns_url(url, field="SigningCertURL", code=code)
    if not _CERTIFICATE_PATH.fullmatch(path):
        raise _reject(code, "SigningCertURL", url, "must be a plain path ending in .pem")
    return url


def validate_subscribe_url(url: str) -> str:
    """Return `url` if it may be visited to confirm an SNS subscription; else raise 403."""
    code = RejectionCode.INVALID_SUBSCRIBE_URL
    _, tail = _split_sns_url(url, field="SubscribeURL", code=code)
    if "#" in tail:
        raise _reject(code, "SubscribeURL", url, "must not carry a fragment")
    return url
