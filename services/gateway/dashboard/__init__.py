"""The reports dashboard: a static page that reads the public reports API with the user's API key."""
