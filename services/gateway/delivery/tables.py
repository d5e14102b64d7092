"""The gateway tables whose rows the deliverer sends on, by table name."""

from services.gateway.delivery.models import DeliveryColumns
from services.gateway.receipts.models import WebhookReceipt
from services.gateway.tracking.models import TrackingHit

DELIVERY_MODELS: dict[str, type[DeliveryColumns]] = {
    "webhook_receipt": WebhookReceipt,
    "tracking_hit": TrackingHit,
}
