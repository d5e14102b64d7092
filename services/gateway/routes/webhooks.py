"""Provider webhooks (no API key; each provider is verified its own way)."""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.gateway.receipts.service import RECEIPTS_TABLE, accept_webhook
from services.gateway.webhooks import Provider

router = APIRouter(prefix="/v1", tags=["webhooks"])

_BODY = {
    "requestBody": {
        "required": True,
        "description": "The provider's payload, verified byte for byte; SNS posts JSON as text/plain.",
        "content": {
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}
_DESCRIPTIONS = {
    Provider.SENDGRID: "SendGrid Event Webhook: a signed JSON array of events (ECDSA P-256 signature).",
    Provider.MAILGUN: "Mailgun webhook: one event with an HMAC-SHA256 signature block.",
    Provider.POSTMARK: "Postmark webhook: one record, authenticated by HTTP Basic credentials.",
    Provider.SES: "Amazon SES events through an SNS subscription (signed SNS envelope).",
}


class WebhookAccepted(BaseModel):
    """Outcome of an accepted webhook request."""

    events: int = Field(description="Events mapped from the request")
    stored: int = Field(description="Events seen for the first time and stored for delivery")
    duplicates: int = Field(description="Events already stored by an earlier request")
    skipped: int = Field(description="Provider events that map to no event (ignored or unknown kinds)")


def _endpoint(provider: Provider) -> Callable[[Request], Awaitable[WebhookAccepted]]:
    async def receive(request: Request) -> WebhookAccepted:
        # The raw bytes, not a parsed model: SendGrid signs the exact body.
        body = await request.body()
        state = request.app.state
        accepted = await accept_webhook(state.db, state.webhook_verifier, provider.value, request.headers, body)
        await state.delivery_queue.enqueue(RECEIPTS_TABLE, accepted.stored_ids)
        return WebhookAccepted(
            events=accepted.events,
            stored=len(accepted.stored_ids),
            duplicates=accepted.duplicates,
            skipped=accepted.skipped,
        )

    receive.__name__ = f"receive_{provider.value}_webhook"
    receive.__doc__ = _DESCRIPTIONS[provider]
    return receive


for _provider in Provider:
    router.add_api_route(
        f"/webhooks/{_provider.value}",
        _endpoint(_provider),
        methods=["POST"],
        response_model=WebhookAccepted,
        summary=f"Receive {_provider.value} events",
        openapi_extra=_BODY,
    )
