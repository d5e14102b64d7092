import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.contacts.attributes import AttributeDefinition
from services.contacts.imports import (
    ContactCsvReader,
    DuplicateRow,
    ImportFileError,
    ParsedRow,
    RejectedRow,
    RowResult,
)
from services.contacts.stages import Stage

FIXTURES = Path(__file__).parent / "fixtures"
DEFINITIONS = {
    "birthday": AttributeDefinition(name="birthday", type="date", label="Birthday"),
    "job_title": AttributeDefinition(name="job_title", type="string", label="Job title"),
    "employees": AttributeDefinition(name="employees", type="number", label="Employees"),
}
BASIC_MAPPING = {"email": "email", "first_name": "first_name", "birthday": "birthday"}


def read(data: bytes, mapping: dict[str, str] | None = None, **options: object) -> list[RowResult]:
    reader = ContactCsvReader(io.BytesIO(data), mapping or BASIC_MAPPING, DEFINITIONS, **options)
    return list(reader)


def by_line(results: list[RowResult]) -> dict[int, RowResult]:
    return {result.line: result for result in results}


class GeneratedCsv(io.RawIOBase):
    """A CSV file produced on demand, so a test can read a large file that never exists in memory."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._pending = b""
        self.bytes_served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            chunk = next(self._lines, None)
            if chunk is None:
                break
            self._pending += chunk

        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.bytes_served += size
        return size


class TestCaseFourBadRows:
    """The bulk-import case with one bad email, one impossible date and one duplicate."""

    def results(self) -> dict[int, RowResult]:
        data = (FIXTURES / "case04_bad_rows.csv").read_bytes()
        assert not data.endswith(b"\n")
        return by_line(read(data))

    def test_every_data_line_reported_once(self) -> None:
        assert sorted(self.results()) == [2, 3, 4, 5, 6, 7]

    def test_good_rows_parsed(self) -> None:
        results = self.results()

        for line, email in [(2, "r1@example.com"), (4, "r3@example.com"), (6, "r5@example.com")]:
            assert isinstance(results[line], ParsedRow)
            assert results[line].email.address == email

        assert results[2].fields == {"first_name": "Rita"}
        assert results[2].attributes == {"birthday": "1990-04-01"}

    def test_bad_email_rejected_on_line_3(self) -> None:
        row = self.results()[3]

        assert isinstance(row, RejectedRow)
        assert row.reason == "invalid email"
        assert row.problems[0].field == "email"

    def test_bad_date_rejected_on_line_5(self) -> None:
        row = self.results()[5]

        assert isinstance(row, RejectedRow)
        assert row.reason == "invalid date: birthday"
        assert "'31/02/2024'" in row.detail

    def test_unterminated_last_line_is_duplicate(self) -> None:
        row = self.results()[7]

        assert isinstance(row, DuplicateRow)
        assert row.first_line == 6
        assert row.row.fields == {"first_name": "Rae2"}


class TestEncoding:
    def test_utf8_bom_stripped(self) -> None:
        results = read(b"\xef\xbb\xbfemail,first_name,birthday\nann@example.com,Ann,\n")

        assert isinstance(results[0], ParsedRow)
        assert results[0].email.address == "ann@example.com"

    def test_utf16_rejected_for_whole_file(self) -> None:
        data = "email\nann@example.com\n".encode("utf-16")

        with pytest.raises(ImportFileError, match="UTF-16"):
            read(data, {"email": "email"})

    def test_invalid_bytes_reject_only_their_row(self) -> None:
        data = b"email,first_name,birthday\na@example.com,Ann,\nb@example.com,B\xffob,\nc@example.com,Cy,\n"

        results = by_line(read(data))

        assert isinstance(results[2], ParsedRow)
        assert isinstance(results[3], RejectedRow)
        assert results[3].reason == "invalid UTF-8"
        assert "column 'first_name'" in results[3].detail
        assert "0xff" in results[3].detail
        assert isinstance(results[4], ParsedRow)

    def test_latin1_accent_rejected(self) -> None:
        data = "email,first_name,birthday\nz@example.com,Zoë,\n".encode("latin-1")

        results = read(data)

        assert isinstance(results[0], RejectedRow)
        assert "0xeb" in results[0].detail

    def test_invalid_header_bytes_fail_job(self) -> None:
        with pytest.raises(ImportFileError, match="header line is not valid UTF-8"):
            read(b"em\xe9il\nann@example.com\n", {"email": "email"})

    @pytest.mark.parametrize(
        "name", ["Zoë", "王小明", "محمد", "שָׁלוֹם", "Даша", "🦄", "=1+2", "+49 30 1234", "-5", "@SUM(A1:A9)"]
    )
    def test_cells_kept_as_typed(self, name: str) -> None:
        data = f"email,first_name,birthday\nx@example.com,{name},\n".encode()

        row = read(data)[0]

        assert isinstance(row, ParsedRow)
        assert row.fields["first_name"] == name


class TestMappingErrors:
    def test_missing_mapped_column(self) -> None:
        with pytest.raises(ImportFileError) as caught:
            read(b"email,first_name\nann@example.com,Ann\n", {"email": "email", "Birthday": "birthday"})

        assert caught.value.field == "mapping.Birthday"
        assert "'Birthday' is not in the header line" in str(caught.value)
        assert "'email', 'first_name'" in str(caught.value)

    def test_email_must_be_mapped(self) -> None:
        with pytest.raises(ImportFileError, match="no column maps to email"):
            read(b"email,first_name\nann@example.com,Ann\n", {"first_name": "first_name"})

    def test_unknown_target(self) -> None:
        with pytest.raises(ImportFileError) as caught:
            read(b"email,shoe\nann@example.com,44\n", {"email": "email", "shoe": "shoe_size"})

        assert caught.value.field == "mapping.shoe"
        assert "'shoe_size'" in str(caught.value)

    def test_two_columns_one_target(self) -> None:
        with pytest.raises(ImportFileError, match="both map to email"):
            read(b"email,mail\na@example.com,b@example.com\n", {"email": "email", "mail": "email"})

    def test_repeated_header_column(self) -> None:
        with pytest.raises(ImportFileError, match="appears 2 times"):
            read(b"email,email\na@example.com,b@example.com\n", {"email": "email"})

    def test_empty_mapping(self) -> None:
        with pytest.raises(ImportFileError) as caught:
            ContactCsvReader(io.BytesIO(b"email\n"), {}, DEFINITIONS)

        assert caught.value.field == "mapping"

    def test_empty_file(self) -> None:
        with pytest.raises(ImportFileError, match="the file is empty"):
            read(b"")

    def test_blank_first_line(self) -> None:
        with pytest.raises(ImportFileError, match="first line is blank"):
            read(b"\nemail\nann@example.com\n", {"email": "email"})

    def test_bad_consent_topic(self) -> None:
        with pytest.raises(ImportFileError, match="not a valid consent topic"):
            read(b"email,t\na@example.com,subscribed\n", {"email": "email", "t": "consent.Big Topic"})

    def test_unsupported_delimiter(self) -> None:
        with pytest.raises(ImportFileError) as caught:
            read(b"email\n", {"email": "email"}, delimiter=":")

        assert caught.value.field == "delimiter"

    def test_unmapped_columns_listed(self) -> None:
        reader = ContactCsvReader(io.BytesIO(b"email,notes,source\n"), {"email": "email"})

        assert reader.ignored_columns == ("notes", "source")


class TestRowShape:
    def test_overlong_line_rejected_alone(self) -> None:
        long_name = "x" * 300
        data = f"email,first_name,birthday\na@example.com,{long_name},\nb@example.com,Bo,\n".encode()

        results = by_line(read(data, max_line_bytes=200))

        assert isinstance(results[2], RejectedRow)
        assert results[2].reason == "line too long"
        assert "more than the limit of 200" in results[2].detail
        assert isinstance(results[3], ParsedRow)

    def test_line_at_limit_accepted(self) -> None:
        line = b"a@example.com,Annabelle-Marie,\n"
        data = b"email,first_name,birthday\n" + line

        results = read(data, max_line_bytes=len(line))

        assert isinstance(results[0], ParsedRow)

    def test_quoted_cell_spanning_lines(self) -> None:
        data = b'email,job_title\n"a@example.com","Head of\nGrowth, EMEA"\nb@example.com,CTO\n'

        results = by_line(read(data, {"email": "email", "job_title": "job_title"}))

        assert results[2].attributes == {"job_title": "Head of\nGrowth, EMEA"}
        assert results[4].email.address == "b@example.com"

    def test_crlf_line_endings(self) -> None:
        data = b"email,first_name,birthday\r\na@example.com,Ann,1990-01-02\r\nb@example.com,Bo,\r\n"

        results = read(data)

        assert [row.fields["first_name"] for row in results] == ["Ann", "Bo"]
        assert results[0].attributes == {"birthday": "1990-01-02"}

    def test_malformed_quotes_rejected_and_reading_continues(self) -> None:
        data = b'email,first_name,birthday\na@example.com,"Ann"x,\nb@example.com,Bo,\n'

        results = by_line(read(data))

        assert isinstance(results[2], RejectedRow)
        assert results[2].reason == "malformed CSV"
        assert isinstance(results[3], ParsedRow)

    def test_unclosed_quote_at_end(self) -> None:
        data = b'email,first_name,birthday\na@example.com,Ann,\nb@example.com,"Bo,\n'

        results = by_line(read(data))

        assert isinstance(results[2], ParsedRow)
        assert isinstance(results[3], RejectedRow)
        assert results[3].reason == "malformed CSV"

    def test_unclosed_quote_bounded_by_row_limit(self) -> None:
        swallowed = b"".join(f"c{i}@example.com,C,\n".encode() for i in range(20))
        data = b'email,first_name,birthday\na@example.com,"Ann,\n' + swallowed + b"z@example.com,Zed,\n"

        results = read(data, max_line_bytes=100, max_row_bytes=200)

        assert isinstance(results[0], RejectedRow)
        assert results[0].line == 2
        assert results[0].reason == "row too long"
        assert results[-1].email.address == "z@example.com"

    def test_too_few_columns(self) -> None:
        results = read(b"email,first_name,birthday\na@example.com,Ann\n")

        assert isinstance(results[0], RejectedRow)
        assert results[0].detail == "the row has 2 columns, the header has 3"

    def test_empty_trailing_columns_accepted(self) -> None:
        results = read(b"email,first_name,birthday\na@example.com,Ann,,,\n")

        assert isinstance(results[0], ParsedRow)

    def test_extra_values_rejected(self) -> None:
        results = read(b"email,first_name,birthday\na@example.com,Ann,,surprise\n")

        assert isinstance(results[0], RejectedRow)
        assert results[0].reason == "wrong number of columns"

    def test_blank_lines_skipped_and_counted(self) -> None:
        reader = ContactCsvReader(io.BytesIO(b"email\n\na@example.com\n,\n\nb@example.com\n\n"), {"email": "email"})

        lines = [result.line for result in reader]

        assert lines == [3, 6]
        assert reader.blank_lines == 4

    def test_semicolon_delimiter(self) -> None:
        results = read(b"email;first_name;birthday\na@example.com;Ann;1990-01-02\n", delimiter=";")

        assert results[0].fields == {"first_name": "Ann"}

    def test_blank_cells_leave_fields_out(self) -> None:
        results = read(b"email,first_name,birthday\n a@example.com , , \n")

        assert results[0].fields == {}
        assert results[0].attributes == {}

    def test_missing_email_cell(self) -> None:
        results = read(b"email,first_name,birthday\n,Ann,\n")

        assert isinstance(results[0], RejectedRow)
        assert results[0].reason == "missing email"

    def test_every_problem_of_a_row_listed(self) -> None:
        results = read(b"email,first_name,birthday\nnope,Ann,2024-99-99\n")

        assert [problem.reason for problem in results[0].problems] == ["invalid email", "invalid date: birthday"]


class TestDuplicates:
    def test_match_ignores_case_and_spaces(self) -> None:
        results = read(b"email,first_name,birthday\nann@example.com,Ann,\n ANN@Example.COM ,Annie,\n")

        assert isinstance(results[1], DuplicateRow)
        assert results[1].first_line == 2

    def test_rejected_first_occurrence_does_not_count(self) -> None:
        results = read(b"email,first_name,birthday\nann@example.com,Ann,bad\nann@example.com,Ann,\n")

        assert isinstance(results[0], RejectedRow)
        assert isinstance(results[1], ParsedRow)

    def test_merge_lays_later_values_over_earlier(self) -> None:
        mapping = {"email": "email", "first_name": "first_name", "job_title": "job_title", "status": "consent"}
        data = b"email,first_name,job_title,status\nann@example.com,Ann,CTO,subscribed\nANN@example.com,Annie,,unsubscribed\n"
        first, duplicate = read(data, mapping)

        merged = first.merged_with(duplicate.row)

        assert merged.fields == {"first_name": "Annie"}
        assert merged.attributes == {"job_title": "CTO"}
        assert merged.email.address == "ann@example.com"
        assert merged.consent_hints == {None: "subscribed"}


class TestOtherTargets:
    def test_consent_columns_become_hints(self) -> None:
        mapping = {"email": "email", "status": "consent", "news": "consent.newsletter"}

        row = read(b"email,status,news\nu@example.com,Subscribed,unsubscribed\n", mapping)[0]

        assert row.consent_hints == {None: "subscribed", "newsletter": "unsubscribed"}

    @pytest.mark.parametrize("status", ["bounced", "complained", "yes"])
    def test_consent_hint_values_limited(self, status: str) -> None:
        row = read(f"email,status\nu@example.com,{status}\n".encode(), {"email": "email", "status": "consent"})[0]

        assert isinstance(row, RejectedRow)
        assert row.reason == "invalid consent"

    def test_stage_column(self) -> None:
        rows = read(b"email,stage\na@example.com,SQL\nb@example.com,hot\n", {"email": "email", "stage": "stage"})

        assert rows[0].stage is Stage.SQL
        assert isinstance(rows[1], RejectedRow)
        assert rows[1].reason == "invalid stage"

    def test_company_columns(self) -> None:
        mapping = {"email": "email", "web": "company.domain", "size": "company.size", "sector": "company.industry"}

        rows = read(b"email,web,size,sector\na@example.com,ACME.io,250,SaaS\nb@example.com,acme.io,lots,SaaS\n", mapping)

        assert rows[0].company == {"domain": "acme.io", "size": 250, "industry": "SaaS"}
        assert rows[1].problems[0].field == "company.size"

    def test_attribute_by_prefixed_name(self) -> None:
        rows = read(b"email,staff\na@example.com,12\n", {"email": "email", "staff": "attributes.employees"})

        assert rows[0].attributes == {"employees": 12}

    def test_timezone_checked(self) -> None:
        rows = read(b"email,tz\na@example.com,Europe/Berlin\nb@example.com,Mars/Base\n", {"email": "email", "tz": "timezone"})

        assert rows[0].fields == {"timezone": "Europe/Berlin"}
        assert rows[1].reason == "invalid timezone"


class TestLargeFiles:
    def test_ten_thousand_rows_with_three_bad(self) -> None:
        bad_lines = {1_234: "not-an-email", 5_000: "31/02/2024", 9_999: "bad-bytes"}
        lines = [b"email,first_name,birthday\n"]
        for line in range(2, 10_002):
            email, birthday, name = f"user{line}@example.com", "1990-01-01", b"Name"
            if bad_lines.get(line) == "not-an-email":
                email = "not-an-email"
            elif bad_lines.get(line) == "31/02/2024":
                birthday = "31/02/2024"
            elif bad_lines.get(line) == "bad-bytes":
                name = b"N\xc3\x28me"
            lines.append(email.encode() + b"," + name + b"," + birthday.encode() + b"\n")

        results = read(b"".join(lines))

        rejected = {row.line: row.reason for row in results if isinstance(row, RejectedRow)}
        assert rejected == {1_234: "invalid email", 5_000: "invalid date: birthday", 9_999: "invalid UTF-8"}
        assert len(results) == 10_000
        assert sum(isinstance(row, ParsedRow) for row in results) == 9_997

    def test_hundred_thousand_rows_stream(self) -> None:
        def lines() -> Iterator[bytes]:
            yield b"email,first_name,birthday\n"
            for number in range(100_000):
                yield f"user{number}@example.com,Name{number},1990-01-{number % 28 + 1:02d}\n".encode()

        source = GeneratedCsv(lines())
        reader = ContactCsvReader(io.BufferedReader(source, buffer_size=8192), BASIC_MAPPING, DEFINITIONS)
        rows = iter(reader)

        first = next(rows)
        served_for_first_row = source.bytes_served
        remaining = sum(1 for _ in rows)

        assert first.line == 2
        assert served_for_first_row <= 16_384
        assert remaining == 99_999
        assert source.bytes_served > 4_000_000
