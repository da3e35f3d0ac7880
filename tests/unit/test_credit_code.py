import pytest

from subsidy.core import credit_code
from subsidy.core.credit_code import InvalidCreditCode, complete, is_valid, validate

# From shared/policy/examples: real-format codes of Songjiang (310117).
VALID = ["913101173AGYGLUY2P", "913101173W7WKKHD9B"]


@pytest.mark.parametrize("code", VALID)
def test_codes_from_the_worked_examples_are_valid(code):
    assert validate(code) == code


def test_the_illustrative_code_in_the_contract_fails_its_organisation_check():
    with pytest.raises(InvalidCreditCode, match="17th"):
        validate("91310117MA1J12345X")


@pytest.mark.parametrize("position", range(18))
def test_changing_any_single_character_is_caught(position):
    code = VALID[0]
    for replacement in credit_code.CODE_CHARS:
        if replacement == code[position]:
            continue
        mutated = code[:position] + replacement + code[position + 1 :]
        if position in range(2, 8) and not replacement.isdigit():
            assert not is_valid(mutated)
            continue
        # Both check characters together catch every single substitution in
        # positions 9-18; in 1-8 the 18th character catches it.
        assert not is_valid(mutated), mutated


@pytest.mark.parametrize(
    "code,problem",
    [
        ("91310117MA1J1234", "18 characters"),
        ("91310117MA1J1234IX", "not allowed"),
        ("913101a73AGYGLUY2P", "not allowed"),
        ("9131A1173AGYGLUY2P", "division"),
        ("913101173AGYGLUY2Q", "18th"),
        (913101173, "string"),
    ],
)
def test_a_bad_code_says_which_rule_it_breaks(code, problem):
    with pytest.raises(InvalidCreditCode, match=problem):
        validate(code)


def test_complete_adds_both_check_characters():
    code = complete("91310117MA1J1234")
    assert len(code) == 18 and is_valid(code)
    assert complete(VALID[0][:16]) == VALID[0]
