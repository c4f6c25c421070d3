import pytest

from hejcti import phones


@pytest.mark.parametrize("raw", ["+49 30 12345678", "030 12345678", "0049 30 12345678", "(030) 1234-5678",
                                 "+49 (0)30 12345678", "+49-30-12345678", "493012345678"])
def test_common_forms_normalize_to_e164(raw):
    assert phones.normalize(raw, "DE") == "+493012345678"


@pytest.mark.parametrize("raw", ["", "abc", "12", "+"])
def test_nonsense_is_no_number(raw):
    assert phones.normalize(raw, "DE") is None


def test_region_decides_numbers_without_country_code():
    assert phones.normalize("(513) 555-7611", "US") == "+15135557611"
    assert phones.normalize("01 234 5678", "AT") == "+4312345678"


@pytest.mark.parametrize("raw, expected", [("4915791234567", "+4915791234567"), ("anonymous", None), ("", None),
                                           (None, None), ("123456e0", None), ("+4915791234567", "+4915791234567")])
def test_from_sipgate(raw, expected):
    assert phones.from_sipgate(raw) == expected


def test_variants_cover_what_crms_store():
    v = phones.variants("+493012345678", "DE")
    assert v[:5] == ("+493012345678", "493012345678", "00493012345678", "03012345678", "3012345678")
    assert "+49 30 12345678" in v and "030 12345678" in v
    assert "(513) 555-7611" in phones.variants("+15135557611", "US")


@pytest.mark.parametrize("stored, expected", [("030 12345678", "exact"), ("+49 30 1234 5678", "exact"),
                                              ("12345678", "suffix"), ("030 12345679", None), (None, None),
                                              ("0049 30 12345678", "exact"),
                                              ("+1 415 555 1212", None)])
def test_match(stored, expected):
    assert phones.match(stored, "+493012345678", "DE") == expected


def test_a_valid_foreign_number_ending_in_the_callers_digits_is_no_match():
    assert phones.match("+43 15791234567", "+4915791234567", "DE") is None
    assert phones.match("0043 15791234567", "+4915791234567", "DE") is None
    assert phones.match("1234567", "+4915791234567", "DE") == "suffix"  # a local number: digits decide
    assert phones.match("91234567", "+4915791234567", "DE") == "suffix"  # parses in DE, but has no area code


def test_display_is_national_at_home_and_international_abroad():
    assert phones.display("+4915791234567", "DE") == "01579 1234567"
    assert phones.display("+15135557611", "DE") == "+1 513-555-7611"
    assert phones.display(None, "DE") is None


@pytest.mark.parametrize("raw, masked", [("+4915791234567", "…567"), ("0157 91234567", "…567"), ("12", "***"),
                                         (None, "")])
def test_mask_keeps_the_last_three_digits(raw, masked):
    assert phones.mask(raw) == masked


ARABIC = "٤٩١٥٧٩١٢٣٤٥٦٧"  # 4915791234567 in Arabic-Indic digits
SUPERSCRIPT = "⁴⁹¹⁵⁷⁹¹²³⁴⁵⁶⁷"
FULLWIDTH = "４９１５７９１２３４５６７"


@pytest.mark.parametrize("raw", [ARABIC, SUPERSCRIPT, FULLWIDTH, "+" + ARABIC, "4915791234²", "49१५७९१२३४"])
def test_digits_of_another_script_are_no_sipgate_number(raw):
    assert phones.from_sipgate(raw) is None
    assert phones.foreign_digits(raw) is True
    assert phones.digits(raw) == "".join(c for c in raw if c in "0123456789")


@pytest.mark.parametrize("raw", ["4915791234567", "anonymous", "123456e0", "", None, "+49 (30) 1", "Jürgen"])
def test_ascii_values_hold_no_foreign_digits(raw):
    assert phones.foreign_digits(raw) is False


@pytest.mark.parametrize("raw", [ARABIC, SUPERSCRIPT, FULLWIDTH, "+" + ARABIC, "+49 ١٥٧ ٩١٢٣٤٥٦٧"])
def test_mask_counts_digits_of_every_script(raw):
    assert phones.mask(raw) == "…567"


def test_ascii_digits_keeps_the_length_and_everything_but_digits():
    text = f"from={ARABIC} to={SUPERSCRIPT} ½ Ⅻ Jürgen"
    shadow = phones.ascii_digits(text)
    assert len(shadow) == len(text)
    assert shadow.startswith("from=4915791234567 to=4915791234567 ") and shadow.endswith(" Jürgen")
