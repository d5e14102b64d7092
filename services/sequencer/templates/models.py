"""The template table."""

from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.sequencer.db import SequencerBase


class Template(SequencerBase, table=True):  # type: ignore[call-arg]
    """An email template as saved: Jinja2 sources of the subject, the HTML and an optional text part."""

    __tablename__ = "template"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    subject: str = Field(sa_type=Text)
    html: str = Field(sa_type=Text)
    text: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
