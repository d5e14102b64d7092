"""Provider webhook receipts: one row per provider event, de-duplicated and delivered to contacts."""
