"""Field-path errors shared by the sequence models and `parse_sequence`."""

from __future__ import annotations

from dataclasses import dataclass

Location = tuple[str | int, ...]


class FieldErrors(ValueError):
    """Errors found by a model validator, each with its path relative to the model.

    Pydantic keeps the exception in the error's context, so `parse_sequence` can join these relative
    paths to the model's own location and name the exact field.
    """

    def __init__(self, errors: list[tuple[Location, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{format_path(path) or '(root)'}: {message}" for path, message in errors))


def format_path(location: Location) -> str:
    """Format a location tuple as `steps[2].wait.days`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text




@dataclass(frozen=True)
class FieldError:
    """One invalid field: its path in the document and what is wrong with it."""

    path: str
    message: str


class SequenceValidationError(ValueError):
    """A sequence definition failed validation; `errors` names each invalid field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("invalid sequence: " + "; ".join(f"{e.path or '(root)'}: {e.message}" for e in errors))
