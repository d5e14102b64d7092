import pytest
from pydantic import ValidationError

from services.contacts.stages import (
    Approvals,
    Stage,
    StageDefinitionRevision,
    default_stage_definition,
    default_stage_definitions,
    revise_definition,
)


class TestDefaultDefinitions:
    def test_one_per_stage_in_order(self) -> None:
        stages = [definition.stage for definition in default_stage_definitions()]

        assert stages == list(Stage)

    @pytest.mark.parametrize("definition", default_stage_definitions(), ids=lambda definition: definition.stage.value)
    def test_version_one_with_default_approvals(self, definition: object) -> None:
        assert definition.version == 1
        assert definition.approved_by == Approvals(marketing="default", sales="default")

    @pytest.mark.parametrize("definition", default_stage_definitions(), ids=lambda definition: definition.stage.value)
    def test_written_definition_and_criteria(self, definition: object) -> None:
        assert len(definition.definition) > 40
        assert len(definition.entry_criteria) >= 1
        assert all(criterion.endswith(".") for criterion in definition.entry_criteria)

    def test_mql_mentions_threshold(self) -> None:
        mql = default_stage_definition(Stage.MQL)

        assert "MQL threshold" in " ".join(mql.entry_criteria)

    def test_serialises_for_api(self) -> None:
        body = default_stage_definition(Stage.SQL).model_dump(mode="json")

        assert body["stage"] == "sql"
        assert body["approved_by"] == {"marketing": "default", "sales": "default"}
        assert set(body) == {"stage", "version", "title", "definition", "entry_criteria", "approved_by"}


class TestReviseDefinition:
    REVISION = StageDefinitionRevision(
        title="Marketing-qualified lead",
        definition="A lead with a score of 60 or more in the default model.",
        entry_criteria=("Score of 60 or more.",),
        approved_by=Approvals(marketing="maria@example.com", sales="sam@example.com"),
    )

    def test_raises_version_keeps_stage(self) -> None:
        revised = revise_definition(default_stage_definition(Stage.MQL), self.REVISION)

        assert revised.stage is Stage.MQL
        assert revised.version == 2
        assert revised.approved_by.sales == "sam@example.com"

    def test_second_revision_is_version_three(self) -> None:
        revised = revise_definition(revise_definition(default_stage_definition(Stage.MQL), self.REVISION), self.REVISION)

        assert revised.version == 3

    @pytest.mark.parametrize(
        ("change", "loc"),
        [
            ({"definition": "  "}, ("definition",)),
            ({"entry_criteria": ()}, ("entry_criteria",)),
            ({"approved_by": {"marketing": "maria", "sales": ""}}, ("approved_by", "sales")),
        ],
    )
    def test_blank_parts_rejected(self, change: dict[str, object], loc: tuple[str, ...]) -> None:
        body = self.REVISION.model_dump() | change

        with pytest.raises(ValidationError) as caught:
            StageDefinitionRevision.model_validate(body)

        assert caught.value.errors()[0]["loc"] == loc
