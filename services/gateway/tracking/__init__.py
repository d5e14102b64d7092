"""Open pixel, click redirects and unsubscribe links, authenticated by signed tokens."""
