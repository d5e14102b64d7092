import csv
import io

import pytest

from services.contacts.imports import ContactCsvReader, format_cell, neutralise_cell, write_csv


class TestNeutraliseCell:
    @pytest.mark.parametrize(
        ("text", "written"),
        [
            ("=1+2", "'=1+2"),
            ('=HYPERLINK("http://127.0.0.1/x","click")', '\'=HYPERLINK("http://127.0.0.1/x","click")'),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1+2", "'\t=1+2"),
            ("\r=1+2", "'\r=1+2"),
            ("+49 30 1234", "'+49 30 1234"),
        ],
    )
    def test_formula_starts_prefixed(self, text: str, written: str) -> None:
        assert neutralise_cell(text) == written

    @pytest.mark.parametrize("text", ["Ann", "-12.5", "+7", "42", "", "a=b", "王小明", "user@example.com"])
    def test_plain_text_and_numbers_unchanged(self, text: str) -> None:
        assert neutralise_cell(text) == text


class TestFormatCell:
    @pytest.mark.parametrize(
        ("value", "text"),
        [(None, ""), (True, "true"), (False, "false"), (42, "42"), (-3.5, "-3.5"), (["a", "b"], "a;b"), (["=x"], "'=x")],
    )
    def test_values_formatted(self, value: object, text: str) -> None:
        assert format_cell(value) == text


class TestWriteCsv:
    def test_rows_written_and_neutralised(self) -> None:
        out = io.StringIO(newline="")
        rows = [
            {"email": "ann@example.com", "first_name": "=1+2", "interests": ["api", "pricing"]},
            {"email": "bo@example.com", "first_name": "Bo, Jr.", "ignored": "x"},
        ]

        written = write_csv(out, ["email", "first_name", "interests"], rows)

        parsed = list(csv.reader(io.StringIO(out.getvalue())))
        assert written == 2
        assert parsed == [
            ["email", "first_name", "interests"],
            ["ann@example.com", "'=1+2", "api;pricing"],
            ["bo@example.com", "Bo, Jr.", ""],
        ]

    def test_header_neutralised(self) -> None:
        out = io.StringIO(newline="")

        write_csv(out, ["=evil"], [])

        assert out.getvalue() == "'=evil\r\n"

    def test_export_reads_back_as_text(self) -> None:
        out = io.StringIO(newline="")
        write_csv(out, ["email", "first_name"], [{"email": "ann@example.com", "first_name": "Zoë 王"}])

        reader = ContactCsvReader(io.BytesIO(out.getvalue().encode()), {"email": "email", "first_name": "first_name"})
        row = next(iter(reader))

        assert row.fields == {"first_name": "Zoë 王"}
