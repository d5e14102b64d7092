import unicodedata

import pytest

from services.contacts.people import (
    MAX_EMAIL_LENGTH,
    FieldValueError,
    InvalidEmailError,
    email_match_key,
    normalise_email,
)


class TestNormaliseEmail:
    @pytest.mark.parametrize(
        ("raw", "address"),
        [
            ("ann@example.com", "ann@example.com"),
            ("Ann@Example.COM ", "Ann@example.com"),
            ("  ANN@EXAMPLE.COM\t", "ANN@example.com"),
            ("\nann@example.com\r\n", "ann@example.com"),
            ("Ann.O'Neil+news@Sub.Example.co.uk", "Ann.O'Neil+news@sub.example.co.uk"),
        ],
    )
    def test_trims_and_lowers_domain_only(self, raw: str, address: str) -> None:
        assert normalise_email(raw).address == address

    def test_case_and_whitespace_variants_share_match_key(self) -> None:
        variants = ["Ann@Example.COM ", "ann@example.com", " ANN@example.com", "aNn@EXAMPLE.com\n"]

        keys = {email_match_key(variant) for variant in variants}

        assert keys == {"ann@example.com"}

    def test_different_local_parts_stay_apart(self) -> None:
        assert email_match_key("ann@example.com") != email_match_key("anne@example.com")

    @pytest.mark.parametrize(
        ("raw", "address", "match_key"),
        [
            ("José@Bücher.DE", "José@bücher.de", "josé@bücher.de"),
            ("用户@例子.广告", "用户@例子.广告", "用户@例子.广告"),
            ("مستخدم@مثال.شبكة", "مستخدم@مثال.شبكة", "مستخدم@مثال.شبكة"),
            ("Ωmega@Example.gr", "Ωmega@example.gr", "ωmega@example.gr"),
            ("😀@example.com", "😀@example.com", "😀@example.com"),
        ],
    )
    def test_international_addresses_round_trip(self, raw: str, address: str, match_key: str) -> None:
        normalised = normalise_email(raw)

        assert normalised.address == address
        assert normalised.match_key == match_key

    def test_composed_and_decomposed_accents_match(self) -> None:
        composed = unicodedata.normalize("NFC", "josé@example.com")
        decomposed = unicodedata.normalize("NFD", "josé@example.com")

        assert composed != decomposed
        assert email_match_key(composed) == email_match_key(decomposed)

    def test_local_part_kept_as_typed(self) -> None:
        decomposed = unicodedata.normalize("NFD", "José@example.com")

        assert normalise_email(decomposed).address == decomposed

    def test_domain_property(self) -> None:
        assert normalise_email("Ann@Example.COM").domain == "example.com"


class TestInvalidEmail:
    @pytest.mark.parametrize(
        ("raw", "fragment"),
        [
            ("not-an-email", "must have an @-sign"),
            ("a..b@example.com", "two periods in a row"),
            ("ann@localhost", "should have a period"),
            ("ann smith@example.com", "invalid characters"),
            ("@example.com", "There must be something before the @-sign"),
            ("ann@", "There must be something after the @-sign"),
            ("", "empty"),
            ("   ", "empty"),
        ],
    )
    def test_error_names_value_and_reason(self, raw: str, fragment: str) -> None:
        with pytest.raises(InvalidEmailError) as caught:
            normalise_email(raw)

        assert caught.value.field == "email"
        assert caught.value.summary == "invalid email"
        assert fragment in caught.value.detail
        if raw.strip():
            assert repr(raw.strip()) in caught.value.detail

    def test_non_string_rejected(self) -> None:
        with pytest.raises(InvalidEmailError, match="expected a string, got int"):
            normalise_email(42)

    def test_too_long_rejected(self) -> None:
        raw = "a" * 64 + "@" + ("b" * 60 + ".") * 4 + "com"
        assert len(raw) > MAX_EMAIL_LENGTH

        with pytest.raises(InvalidEmailError, match="more than the maximum of 254"):
            normalise_email(raw)

    def test_field_name_is_passed_through(self) -> None:
        with pytest.raises(InvalidEmailError) as caught:
            normalise_email("nope", field="owner_email")

        assert caught.value.field == "owner_email"
        assert caught.value.summary == "invalid owner_email"

    def test_error_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            normalise_email("nope")

        assert issubclass(InvalidEmailError, FieldValueError)
