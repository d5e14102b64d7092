"""Download and cache of SNS signing certificates."""

import logging
from collections import OrderedDict

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .errors import RejectionCode, WebhookRejected, WebhookUnavailable
from .sns_urls import validate_signing_cert_url

logger = logging.getLogger(__name__)


class CertificateFetcher:
    """Fetch SNS signing certificates over HTTPS and keep the most recent ones in memory.

    The client must verify TLS certificates (the httpx default): the HTTPS connection to an
    amazonaws.com host is what makes the downloaded certificate trustworthy. Redirects are not
    followed, because they could lead to another host.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_s: float = 5.0,
        max_cached: int = 32,
        max_pem_bytes: int = 64 * 1024,
    ) -> None:
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)
        self._max_cached = max_cached
        self._max_pem_bytes = max_pem_bytes
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()

    async def fetch(self, url: str) -> x509.Certificate:
        """Return the certificate at `url`, validating the URL before any request."""
        validate_signing_cert_url(url)

        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached

        certificate = _parse_certificate(await self._download(url), url)
        self._cache[url] = certificate
        if len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        logger.info("fetched SNS signing certificate url=%s", url)
        return certificate

    async def _download(self, url: str) -> bytes:
        try:
            request = self._client.stream("GET", url, timeout=self._timeout, follow_redirects=False)
            async with request as response:
                _check_status(response, url)
                return await self._read_limited(response, url)
        except httpx.HTTPError as exc:
            logger.warning("SNS signing certificate fetch failed url=%s error=%r", url, exc)
            raise WebhookUnavailable(
                f"fetching the SNS signing certificate failed: {type(exc).__name__}",
                code=RejectionCode.CERTIFICATE_UNAVAILABLE,
            ) from exc

    async def _read_limited(self, response: httpx.Response, url: str) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_pem_bytes:
                raise WebhookRejected(
                    403,
                    f"SNS signing certificate at {url} exceeds {self._max_pem_bytes} bytes",
                    code=RejectionCode.INVALID_CERTIFICATE,
                )
        return bytes(body)


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code == 200:
        return
    if response.status_code >= 500:
        raise WebhookUnavailable(
            f"certificate host returned HTTP {response.status_code} for {url}",
            code=RejectionCode.CERTIFICATE_UNAVAILABLE,
        )
    raise WebhookRejected(
        403,
        f"certificate host returned HTTP {response.status_code} for {url}",
        code=RejectionCode.INVALID_CERTIFICATE,
    )


def _parse_certificate(pem: bytes, url: str) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise WebhookRejected(
            403, f"{url} is not a PEM certificate", code=RejectionCode.INVALID_CERTIFICATE
        ) from exc

    if not isinstance(certificate.public_key(), RSAPublicKey):
        raise WebhookRejected(
            403, f"certificate at {url} has no RSA key", code=RejectionCode.INVALID_CERTIFICATE
        )
    return certificate
