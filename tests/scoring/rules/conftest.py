from collections.abc import Iterator
from typing import Any

import pytest

from services.scoring.rules import CompiledRuleSet, load_rule_set
from tests.scoring.rules.builders import CompileDocument, reference_document


@pytest.fixture
def compile_document() -> Iterator[CompileDocument]:
    """Compile rule-set documents and free their engines when the test ends."""
    compiled: list[CompiledRuleSet] = []

    def build(document: dict[str, Any]) -> CompiledRuleSet:
        rule_set = load_rule_set(document)
        compiled.append(rule_set)
        return rule_set

    yield build
    for rule_set in compiled:
        rule_set.close()


@pytest.fixture
def reference(compile_document: CompileDocument) -> CompiledRuleSet:
    return compile_document(reference_document())
