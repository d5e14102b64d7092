"""Parsing and validation of rule-set documents (JSON, YAML or already-decoded data).

Every problem is reported at once, as RuleSetInvalid with one RuleError per problem naming the
rule (by its `name`) and the field inside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from services.scoring.rules.compiler import CompiledRuleSet, compile_rule_set
from services.scoring.rules.errors import RuleError, RuleSetInvalid
from services.scoring.rules.model import CONDITION_TAGS, DECAY_TAGS, RULE_KIND_TAGS, RuleSet

DOCUMENT_FIELD = "document"

_MESSAGES = {
    "missing": "missing required field",
    "extra_forbidden": "unknown field: check its spelling against the rule-set format",
}


def parse_rule_set(document: object) -> RuleSet:
    """Validate a decoded rule-set document (a dict from JSON or YAML) and return the model."""
    if not isinstance(document, Mapping):
        raise RuleSetInvalid(
            [
                RuleError(
                    rule=None,
                    field=DOCUMENT_FIELD,
                    message="a rule set must be an object with mql_threshold and rules",
                )
            ]
        )

    errors = _duplicate_names(document)
    try:
        rule_set = RuleSet.model_validate(document)
    except ValidationError as error:
        raise RuleSetInvalid(_rule_errors(error, document) + errors) from None
    if errors:
        raise RuleSetInvalid(errors)
    return rule_set


def parse_rule_set_json(text: str | bytes) -> RuleSet:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        raise RuleSetInvalid([RuleError(rule=None, field=DOCUMENT_FIELD, message=message)]) from None
    return parse_rule_set(document)


def parse_rule_set_yaml(text: str | bytes) -> RuleSet:
    """Parse YAML with the safe loader, which builds only plain data.

    YAML 1.1 reads unquoted yes/no/on/off as booleans and 2024-01-01 as a date, so quote such
    values when they are meant as strings.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        message = f"invalid YAML{where}: {problem}"
        raise RuleSetInvalid([RuleError(rule=None, field=DOCUMENT_FIELD, message=message)]) from None
    return parse_rule_set(document)


def load_rule_set(source: str | bytes | Mapping[str, Any], *, format: str = "json") -> CompiledRuleSet:
    """Parse, validate and compile a rule set in one step, from "json" or "yaml" text or a dict.

    A rule set that loads here is one the engine accepts, so this is the check to run before
    storing a new version.
    """
    if isinstance(source, Mapping):
        rule_set = parse_rule_set(source)
    elif format == "json":
        rule_set = parse_rule_set_json(source)
    elif format == "yaml":
        rule_set = parse_rule_set_yaml(source)
    else:
        raise ValueError(f"unknown rule-set format {format!r}: use 'json' or 'yaml'")
    return compile_rule_set(rule_set)


def _duplicate_names(document: Mapping[str, Any]) -> list[RuleError]:
    rules = document.get("rules")
    if not isinstance(rules, Sequence) or isinstance(rules, str | bytes):
        return []

    seen: set[str] = set()
    errors = []
    for rule in rules:
        name = rule.get("name") if isinstance(rule, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            message = "duplicate rule name: each rule needs a unique name"
            errors.append(RuleError(rule=name, field="name", message=message))
        seen.add(name)
    return errors


def _rule_errors(error: ValidationError, document: Mapping[str, Any]) -> list[RuleError]:
    return [_rule_error(detail, document) for detail in error.errors(include_url=False)]


def _rule_error(detail: ErrorDetails, document: Mapping[str, Any]) -> RuleError:
    location = list(detail["loc"])
    rule = None
    if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
        rule = _rule_label(document, location[1])
        location = location[2:]
        if location and location[0] in RULE_KIND_TAGS:
            location = location[1:]

    parts = _without_tags(location)
    discriminator = _discriminator_field(detail)
    if discriminator:
        parts.append(discriminator)
    return RuleError(rule=rule, field=_path(parts), message=_message(detail, parts))


def _without_tags(location: list[str | int]) -> list[str | int]:
    # pydantic puts the tag of a discriminated union into the location, but the author never wrote it.
    parts: list[str | int] = []
    for part in location:
        if part in CONDITION_TAGS:
            continue
        if parts and parts[-1] == "decay" and part in DECAY_TAGS:
            continue
        parts.append(part)
    return parts


def _rule_label(document: Mapping[str, Any], index: int) -> str:
    rules = document.get("rules")
    rule = rules[index] if isinstance(rules, Sequence) and index < len(rules) else None
    name = rule.get("name") if isinstance(rule, Mapping) else None
    if isinstance(name, str) and name:
        return name
    return f"rules[{index}]"


def _discriminator_field(detail: ErrorDetails) -> str | None:
    if detail["type"] not in ("union_tag_invalid", "union_tag_not_found"):
        return None
    context = detail.get("ctx") or {}
    return str(context.get("discriminator", "")).strip("'") or None


def _message(detail: ErrorDetails, parts: list[str | int]) -> str:
    kind = detail["type"]
    context = detail.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "value_error":
        return str(context.get("error", detail["msg"]))
    if kind == "enum":
        noun = "operator" if parts and parts[-1] == "op" else "value"
        return f"unknown {noun} {detail['input']!r}: expected {context.get('expected')}"
    discriminator = str(context.get("discriminator", "")).strip("'")
    if kind == "union_tag_invalid":
        return (
            f"unknown {discriminator} {context.get('tag')!r}: expected one of {context.get('expected_tags')}"
        )
    if kind == "union_tag_not_found":
        return f"missing {discriminator}"
    return str(detail["msg"])


def _path(parts: list[str | int]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
