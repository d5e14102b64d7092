import datetime as dt
import json

import pytest
from pydantic import ValidationError

from services.contacts.attributes import (
    MAX_LIST_ITEMS,
    MAX_STRING_LENGTH,
    AttributeDefinition,
    AttributeType,
    AttributeValueError,
    UndefinedAttributeError,
    coerce_attributes,
    coerce_value,
    parse_text_value,
)


def define(name: str, type_: str, **extra: object) -> AttributeDefinition:
    return AttributeDefinition(name=name, type=type_, label=name.replace("_", " ").title(), **extra)


JOB_TITLE = define("job_title", "string")
EMPLOYEES = define("employees", "number")
NEWSLETTER = define("newsletter", "boolean")
BIRTHDAY = define("birthday", "date")
INDUSTRY = define("industry", "enum", allowed_values=("SaaS", "Retail", "Banking"))
INTERESTS = define("interests", "string_list")


class TestAttributeDefinition:
    def test_every_type_defined(self) -> None:
        assert {definition.type for definition in (JOB_TITLE, EMPLOYEES, NEWSLETTER, BIRTHDAY, INDUSTRY, INTERESTS)} == set(
            AttributeType
        )

    def test_description_optional(self) -> None:
        definition = define("tier", "string", description="Support tier from the CRM")

        assert definition.description == "Support tier from the CRM"
        assert JOB_TITLE.description is None

    @pytest.mark.parametrize("name", ["Job Title", "1st", "job-title", "", "a" * 64, "jobTitle"])
    def test_bad_names_rejected(self, name: str) -> None:
        with pytest.raises(ValidationError) as caught:
            define(name, "string")

        assert caught.value.errors()[0]["loc"] == ("name",)

    def test_enum_needs_allowed_values(self) -> None:
        with pytest.raises(ValidationError, match="non-empty allowed_values"):
            define("industry", "enum")

    def test_enum_values_unique_ignoring_case(self) -> None:
        with pytest.raises(ValidationError, match="unique, ignoring case"):
            define("industry", "enum", allowed_values=("SaaS", "saas"))

    def test_allowed_values_only_for_enum(self) -> None:
        with pytest.raises(ValidationError, match="only to enum attributes"):
            define("job_title", "string", allowed_values=("CEO",))

    def test_label_required(self) -> None:
        with pytest.raises(ValidationError):
            AttributeDefinition(name="x", type="string", label="  ")

    def test_field_path(self) -> None:
        assert BIRTHDAY.field == "attributes.birthday"


class TestCoerceValue:
    @pytest.mark.parametrize(
        ("definition", "value", "stored"),
        [
            (JOB_TITLE, "Head of Growth", "Head of Growth"),
            (JOB_TITLE, "", ""),
            (EMPLOYEES, 42, 42),
            (EMPLOYEES, -3.5, -3.5),
            (NEWSLETTER, False, False),
            (BIRTHDAY, "1990-04-01", "1990-04-01"),
            (BIRTHDAY, dt.date(2024, 2, 29), "2024-02-29"),
            (INDUSTRY, "SaaS", "SaaS"),
            (INTERESTS, ["pricing", "api"], ["pricing", "api"]),
            (INTERESTS, [], []),
        ],
    )
    def test_valid_values_stored(self, definition: AttributeDefinition, value: object, stored: object) -> None:
        assert coerce_value(definition, value) == stored

    def test_none_clears_every_type(self) -> None:
        for definition in (JOB_TITLE, EMPLOYEES, NEWSLETTER, BIRTHDAY, INDUSTRY, INTERESTS):
            assert coerce_value(definition, None) is None

    @pytest.mark.parametrize(
        ("definition", "value", "fragment"),
        [
            (JOB_TITLE, 5, "expected a string, got int"),
            (EMPLOYEES, "42", "expected a number, got str"),
            (EMPLOYEES, True, "expected a number, got bool"),
            (EMPLOYEES, float("nan"), "not a finite number"),
            (EMPLOYEES, float("inf"), "not a finite number"),
            (NEWSLETTER, "yes", "expected true or false, got str"),
            (NEWSLETTER, 1, "expected true or false, got int"),
            (BIRTHDAY, "31/02/2024", "not a date in the form YYYY-MM-DD"),
            (BIRTHDAY, "2024-02-31", "day is out of range for month"),
            (BIRTHDAY, "2023-02-29", "day is out of range for month"),
            (BIRTHDAY, "20240201", "not a date in the form YYYY-MM-DD"),
            (BIRTHDAY, dt.datetime(2024, 1, 1, 9, 0), "without a time of day"),
            (BIRTHDAY, 19900401, "expected a date string"),
            (INDUSTRY, 3, "expected one of the allowed values"),
            (INTERESTS, "pricing", "expected an array of strings, got str"),
        ],
    )
    def test_wrong_values_name_attribute(self, definition: AttributeDefinition, value: object, fragment: str) -> None:
        with pytest.raises(AttributeValueError) as caught:
            coerce_value(definition, value)

        assert caught.value.field == f"attributes.{definition.name}"
        assert caught.value.summary == f"invalid {definition.type.value}: {definition.name}"
        assert fragment in caught.value.detail

    def test_unparsable_date_summary(self) -> None:
        with pytest.raises(AttributeValueError) as caught:
            coerce_value(BIRTHDAY, "31/02/2024")

        assert caught.value.summary == "invalid date: birthday"
        assert "'31/02/2024'" in str(caught.value)

    def test_enum_value_not_allowed(self) -> None:
        with pytest.raises(AttributeValueError) as caught:
            coerce_value(INDUSTRY, "saas")

        assert caught.value.summary == "value not allowed: industry"
        assert "'SaaS', 'Retail', 'Banking'" in caught.value.detail

    def test_list_item_error_has_index(self) -> None:
        with pytest.raises(AttributeValueError) as caught:
            coerce_value(INTERESTS, ["api", 7])

        assert caught.value.field == "attributes.interests[1]"

    def test_list_too_long(self) -> None:
        with pytest.raises(AttributeValueError, match=f"more than the maximum of {MAX_LIST_ITEMS}"):
            coerce_value(INTERESTS, ["x"] * (MAX_LIST_ITEMS + 1))

    def test_string_too_long(self) -> None:
        with pytest.raises(AttributeValueError, match=f"more than the maximum of {MAX_STRING_LENGTH}"):
            coerce_value(JOB_TITLE, "x" * (MAX_STRING_LENGTH + 1))

    def test_nul_character_rejected(self) -> None:
        with pytest.raises(AttributeValueError, match="U\\+0000"):
            coerce_value(JOB_TITLE, "CEO\x00")

    @pytest.mark.parametrize(
        "text",
        [
            "Directrice générale",
            "代表取締役社長",
            "首席执行官",
            "대표이사",
            "مدير تنفيذي",
            "מנהל כללי",
            "Генеральный директор",
            "मुख्य कार्यकारी अधिकारी",
            "🚀 Growth 👩‍💻",
            "  spaced  \nnote",
        ],
    )
    def test_unicode_round_trips_through_json(self, text: str) -> None:
        stored = coerce_value(JOB_TITLE, text)

        assert stored == text
        assert json.loads(json.dumps(stored)) == text
        assert coerce_value(INTERESTS, [text]) == [text]


class TestParseTextValue:
    @pytest.mark.parametrize(
        ("definition", "text", "stored"),
        [
            (JOB_TITLE, "=1+2", "=1+2"),
            (EMPLOYEES, "42", 42),
            (EMPLOYEES, " -7 ", -7),
            (EMPLOYEES, "3.25", 3.25),
            (EMPLOYEES, "1e3", 1000.0),
            (NEWSLETTER, "TRUE", True),
            (NEWSLETTER, "yes", True),
            (NEWSLETTER, "0", False),
            (NEWSLETTER, "No", False),
            (BIRTHDAY, " 1990-04-01 ", "1990-04-01"),
            (INDUSTRY, "saas", "SaaS"),
            (INDUSTRY, "Retail", "Retail"),
            (INTERESTS, "pricing; api ;;docs", ["pricing", "api", "docs"]),
        ],
    )
    def test_cells_parsed(self, definition: AttributeDefinition, text: str, stored: object) -> None:
        assert parse_text_value(definition, text) == stored

    def test_blank_cell_is_none(self) -> None:
        for definition in (JOB_TITLE, EMPLOYEES, NEWSLETTER, BIRTHDAY, INDUSTRY, INTERESTS):
            assert parse_text_value(definition, "  ") is None

    @pytest.mark.parametrize(
        ("definition", "text", "summary"),
        [
            (EMPLOYEES, "1,000", "invalid number: employees"),
            (EMPLOYEES, "ten", "invalid number: employees"),
            (EMPLOYEES, "1e999", "invalid number: employees"),
            (EMPLOYEES, "9" * 60, "invalid number: employees"),
            (NEWSLETTER, "maybe", "invalid boolean: newsletter"),
            (BIRTHDAY, "31/02/2024", "invalid date: birthday"),
            (BIRTHDAY, "2024-13-01", "invalid date: birthday"),
            (INDUSTRY, "Mining", "value not allowed: industry"),
        ],
    )
    def test_bad_cells_rejected(self, definition: AttributeDefinition, text: str, summary: str) -> None:
        with pytest.raises(AttributeValueError) as caught:
            parse_text_value(definition, text)

        assert caught.value.summary == summary


class TestCoerceAttributes:
    DEFINITIONS = {definition.name: definition for definition in (JOB_TITLE, EMPLOYEES, BIRTHDAY)}

    def test_all_values_coerced(self) -> None:
        stored = coerce_attributes(self.DEFINITIONS, {"job_title": "CTO", "employees": 12, "birthday": None})

        assert stored == {"job_title": "CTO", "employees": 12, "birthday": None}

    def test_undefined_attribute_named(self) -> None:
        with pytest.raises(UndefinedAttributeError) as caught:
            coerce_attributes(self.DEFINITIONS, {"job_title": "CTO", "shoe_size": 44})

        assert caught.value.field == "attributes.shoe_size"
        assert caught.value.summary == "undefined attribute: shoe_size"

    def test_first_bad_value_named(self) -> None:
        with pytest.raises(AttributeValueError) as caught:
            coerce_attributes(self.DEFINITIONS, {"employees": "many"})

        assert caught.value.field == "attributes.employees"
