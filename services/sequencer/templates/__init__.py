"""Email templates: save-time validation and sandboxed rendering with tracking."""

from services.sequencer.templates.environment import MissingToken, MissingTokenError, fallback
from services.sequencer.templates.render import (
    EmailTemplate,
    Recipient,
    RenderedEmail,
    TemplateRenderError,
    TemplateSecurityError,
    render_email,
    template_context,
)
from services.sequencer.templates.text import html_to_text
from services.sequencer.templates.tracking import TrackingLinks, rewrite_links
from services.sequencer.templates.validation import (
    TemplateIssue,
    TemplateValidationError,
    check_part,
    validate_template,
)

__all__ = (
    "EmailTemplate",
    "MissingToken",
    "MissingTokenError",
    "Recipient",
    "RenderedEmail",
    "TemplateIssue",
    "TemplateRenderError",
    "TemplateSecurityError",
    "TemplateValidationError",
    "TrackingLinks",
    "check_part",
    "fallback",
    "html_to_text",
    "render_email",
    "rewrite_links",
    "template_context",
    "validate_template",
)
