import zoneinfo

import pytest

from services.contacts.people import (
    MAX_COMPANY_SIZE,
    InvalidProfileError,
    InvalidTimezoneError,
    load_timezone,
    normalise_domain,
    validate_company,
    validate_company_size,
    validate_contact_timezone,
    validate_text,
    validate_timezone,
)


class TestValidateTimezone:
    @pytest.mark.parametrize("name", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Etc/GMT+5"])
    def test_iana_names_accepted(self, name: str) -> None:
        assert validate_timezone(name) == name

    def test_surrounding_spaces_trimmed(self) -> None:
        assert validate_timezone(" Europe/Berlin ") == "Europe/Berlin"

    def test_load_returns_zoneinfo(self) -> None:
        assert load_timezone("Europe/Berlin") == zoneinfo.ZoneInfo("Europe/Berlin")

    def test_wrong_case_suggests_name(self) -> None:
        with pytest.raises(InvalidTimezoneError) as caught:
            validate_timezone("europe/berlin")

        assert caught.value.field == "timezone"
        assert "did you mean 'Europe/Berlin'?" in caught.value.detail

    @pytest.mark.parametrize(
        "name", ["Mars/Olympus", "+02:00", "CEST", "../../etc/passwd", "Europe/", "localtime", "Factory", "posixrules"]
    )
    def test_non_zones_rejected(self, name: str) -> None:
        with pytest.raises(InvalidTimezoneError) as caught:
            validate_timezone(name)

        assert caught.value.summary == "invalid timezone"
        assert repr(name) in caught.value.detail

    def test_empty_name_rejected(self) -> None:
        with pytest.raises(InvalidTimezoneError, match="the time zone is empty"):
            validate_timezone("  ")

    def test_non_string_rejected(self) -> None:
        with pytest.raises(InvalidTimezoneError, match="expected a string, got int"):
            validate_timezone(2)

    def test_contact_timezone_blank_is_none(self) -> None:
        assert validate_contact_timezone(None) is None
        assert validate_contact_timezone(" ") is None
        assert validate_contact_timezone("Asia/Tokyo") == "Asia/Tokyo"


class TestValidateText:
    @pytest.mark.parametrize(
        "name",
        ["Zoë", "Björk Guðmundsdóttir", "王小明", "محمد", "שָׁלוֹם", "Ελένη", "Даша", "🦄 Unicorn", "O'Brien-Smith"],
    )
    def test_any_script_round_trips(self, name: str) -> None:
        assert validate_text(name, field="first_name") == name

    def test_trims_and_blank_is_none(self) -> None:
        assert validate_text("  Ann  ", field="first_name") == "Ann"
        assert validate_text("   ", field="first_name") is None
        assert validate_text(None, field="first_name") is None

    def test_control_character_rejected(self) -> None:
        with pytest.raises(InvalidProfileError) as caught:
            validate_text("Ann\x00", field="first_name")

        assert caught.value.field == "first_name"
        assert "U+0000" in caught.value.detail

    def test_overlong_rejected(self) -> None:
        with pytest.raises(InvalidProfileError, match="201 characters, more than the maximum of 200"):
            validate_text("x" * 201, field="last_name")

    def test_non_string_rejected(self) -> None:
        with pytest.raises(InvalidProfileError, match="expected a string, got list"):
            validate_text(["Ann"], field="first_name")


class TestCompany:
    @pytest.mark.parametrize(
        ("raw", "domain"),
        [("Example.COM", "example.com"), ("example.com.", "example.com"), ("Bücher.DE", "bücher.de"), (" a-b.io ", "a-b.io")],
    )
    def test_domain_normalised(self, raw: str, domain: str) -> None:
        assert normalise_domain(raw) == domain

    @pytest.mark.parametrize(
        ("raw", "fragment"),
        [
            ("https://example.com/", "not a URL"),
            ("localhost", "at least one dot"),
            ("exa mple.com", "other than a letter, digit or hyphen"),
            ("-bad.com", "starts or ends with a hyphen"),
            ("a..com", "empty label"),
        ],
    )
    def test_bad_domain_rejected(self, raw: str, fragment: str) -> None:
        with pytest.raises(InvalidProfileError) as caught:
            normalise_domain(raw)

        assert caught.value.field == "company.domain"
        assert fragment in caught.value.detail

    def test_size_accepts_whole_numbers(self) -> None:
        assert validate_company_size(0) == 0
        assert validate_company_size(250) == 250
        assert validate_company_size(None) is None

    @pytest.mark.parametrize("raw", [True, 2.5, "200", -1, MAX_COMPANY_SIZE + 1])
    def test_size_rejects_other_values(self, raw: object) -> None:
        with pytest.raises(InvalidProfileError) as caught:
            validate_company_size(raw)

        assert caught.value.field == "company.size"

    def test_company_keeps_values_given(self) -> None:
        company = validate_company({"domain": "ACME.io", "name": " Acme ", "size": 40, "industry": "SaaS"})

        assert company == {"domain": "acme.io", "name": "Acme", "size": 40, "industry": "SaaS"}

    def test_company_drops_blank_values(self) -> None:
        assert validate_company({"name": "Acme", "industry": " "}) == {"name": "Acme"}

    def test_company_unknown_key_named(self) -> None:
        with pytest.raises(InvalidProfileError) as caught:
            validate_company({"industy": "SaaS"})

        assert caught.value.field == "company.industy"
        assert "domain, name, size, industry" in caught.value.detail

    def test_company_nested_error_path(self) -> None:
        with pytest.raises(InvalidProfileError) as caught:
            validate_company({"size": "many"})

        assert caught.value.field == "company.size"

    def test_company_must_be_object(self) -> None:
        with pytest.raises(InvalidProfileError, match="expected an object, got str"):
            validate_company("Acme")
