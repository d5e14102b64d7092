"""The base of every error that stops the demo with a message instead of a traceback."""


class DemoError(RuntimeError):
    """The demo cannot go on: bad options, a failed API call, or the platform not doing its part."""
