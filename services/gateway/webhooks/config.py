"""Secrets and limits for webhook verification.

Secrets have no defaults: a provider without settings is disabled, and its requests are refused.
Every secret is a list so a key can be rotated without losing events signed with the old one.
"""

import base64
import binascii
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

_HOUR_S = 3600
_FIVE_MINUTES_S = 300
MIB = 1024 * 1024

PositiveSeconds = Annotated[int, Field(gt=0, description="Seconds")]
NonEmptySecret = Annotated[SecretStr, Field(min_length=1)]


def load_sendgrid_verification_key(text: str) -> EllipticCurvePublicKey:
    """Load a SendGrid verification key: base64 DER as SendGrid shows it, or a PEM public key."""
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = load_pem_public_key(stripped.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(stripped.split()), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not a base64 DER or PEM public key") from exc

    if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, SECP256R1):
        raise ValueError("SendGrid signs with ECDSA P-256; this key is of another type or curve")
    return key


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SendGridSettings(_Settings):
    verification_keys: tuple[str, ...] = Field(
        min_length=1, description="Verification keys, base64 DER or PEM, one per Event Webhook"
    )
    max_age_s: PositiveSeconds = Field(
        default=25 * _HOUR_S, description="SendGrid retries for up to 24 h after the event"
    )
    max_future_s: PositiveSeconds = _FIVE_MINUTES_S

    _public_keys: tuple[EllipticCurvePublicKey, ...] = PrivateAttr()

    @field_validator("verification_keys")
    @classmethod
    def _check_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for position, key in enumerate(keys):
            try:
                load_sendgrid_verification_key(key)
            except ValueError as exc:
                raise ValueError(f"verification key #{position}: {exc}") from exc
        return keys

    def model_post_init(self, context: object, /) -> None:
        self._public_keys = tuple(load_sendgrid_verification_key(k) for k in self.verification_keys)

    @property
    def public_keys(self) -> tuple[EllipticCurvePublicKey, ...]:
        return self._public_keys


class MailgunSettings(_Settings):
    signing_keys: tuple[NonEmptySecret, ...] = Field(
        min_length=1, description="HTTP webhook signing keys (not the API key)"
    )
    verify_parent_signature: bool = Field(
        default=False,
        description="Check `parent-signature` instead: the keys belong to the parent account",
    )
    max_age_s: PositiveSeconds = Field(
        default=12 * _HOUR_S, description="Mailgun retries for about 8 h with the original token"
    )
    max_future_s: PositiveSeconds = _FIVE_MINUTES_S
    token_ttl_s: PositiveSeconds = Field(
        default=24 * _HOUR_S, description="How long a token stays bound to its event"
    )

    @property
    def token_binding_ttl_s(self) -> int:
        """Seconds a token stays bound: `token_ttl_s`, raised to the signature window if shorter.

        A token whose binding expired while its signature is still fresh could be replayed with
        other event data. The window spans `max_future_s` before and `max_age_s` after the
        signature timestamp.
        """
        return max(self.token_ttl_s, self.max_age_s + self.max_future_s)


class PostmarkCredentials(_Settings):
    username: str = Field(min_length=1)
    password: NonEmptySecret


class PostmarkSettings(_Settings):
    credentials: tuple[PostmarkCredentials, ...] = Field(
        min_length=1, description="HTTP Basic pairs configured in Postmark's webhook URL"
    )
    shared_header_name: str = Field(default="X-Webhook-Secret", min_length=1)
    shared_header_values: tuple[NonEmptySecret, ...] = Field(
        default=(), description="Accepted values of the shared header; empty: header not required"
    )


class SesSettings(_Settings):
    allowed_topic_arns: tuple[str, ...] = Field(
        min_length=1, description="SNS topics whose messages are accepted"
    )
    max_age_s: PositiveSeconds = Field(
        default=24 * _HOUR_S, description="SNS keeps the publish time on retries"
    )
    max_future_s: PositiveSeconds = _FIVE_MINUTES_S

    @field_validator("allowed_topic_arns")
    @classmethod
    def _check_arns(cls, arns: tuple[str, ...]) -> tuple[str, ...]:
        for arn in arns:
            if not arn.startswith("arn:aws") or arn.count(":") != 5:
                raise ValueError(
                    f"{arn!r} is not an SNS topic ARN (arn:aws:sns:region:account:name)"
                )
        return arns


class WebhookConfig(_Settings):
    """Per-provider settings; a provider left as None is disabled."""

    sendgrid: SendGridSettings | None = None
    mailgun: MailgunSettings | None = None
    postmark: PostmarkSettings | None = None
    ses: SesSettings | None = None
    max_body_bytes: int = Field(default=5 * MIB, gt=0, description="Larger bodies get 413")
