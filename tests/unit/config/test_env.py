"""The environment reader: defaults, typed values, and errors that name the variable."""

from __future__ import annotations

import pytest

from pipeline.config.env import EnvReader, SettingsError


class CustomError(SettingsError):
    pass


def test_unset_and_empty_take_the_default() -> None:
    read = EnvReader({"EMPTY": "", "BLANK": "  "})
    assert read.text("UNSET", "x") == "x" and read.text("EMPTY") is None
    assert read.integer("BLANK", 3) == 3 and read.integer("UNSET", None) is None
    assert read.number("EMPTY", 1.5) == 1.5 and read.flag("UNSET", True) is True
    assert read.choice("EMPTY", ("a", "b"), "b") == "b" and read.port("UNSET", 6066) == 6066


def test_values() -> None:
    read = EnvReader({"N": " 12 ", "F": "0.25", "MS": "50", "ON": "Yes", "OFF": "off", "C": "event", "P": "0"})
    assert read.integer("N", 0) == 12
    assert read.number("F", 1.0) == 0.25
    assert read.duration("MS", 1.0, unit="ms") == pytest.approx(0.05)
    assert read.duration("F", 1.0) == 0.25
    assert (read.flag("ON", False), read.flag("OFF", True)) == (True, False)
    assert read.choice("C", ("wall", "event"), "wall") == "event"
    assert read.port("P", 80) == 0


@pytest.mark.parametrize(
    ("value", "call", "message"),
    [
        ("ten", lambda r: r.integer("V", 1), "V='ten' is not an integer"),
        ("0", lambda r: r.integer("V", 1, minimum=1), "V='0' must be at least 1"),
        ("-1", lambda r: r.integer("V", 1), "V='-1' must be at least 0"),
        ("soon", lambda r: r.number("V", 1.0), "V='soon' is not a number"),
        ("-0.5", lambda r: r.number("V", 1.0), "V='-0.5' must be at least 0"),
        ("nan", lambda r: r.number("V", 1.0), "V='nan' must be at least 0"),
        ("0", lambda r: r.duration("V", 1.0, positive=True), "V='0' must be greater than 0"),
        ("70000", lambda r: r.port("V", 1), "V=70000 is not a port number: use 0 to 65535"),
        ("maybe", lambda r: r.flag("V", True), "V='maybe': use 1/true/yes/on or 0/false/no/off"),
        ("hash", lambda r: r.choice("V", ("truncate", "full"), "full"), "V='hash': choose one of truncate, full"),
    ],
)
def test_errors_name_the_variable_and_the_value(value: str, call: object, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        call(EnvReader({"V": value}))  # type: ignore[operator]
    assert str(caught.value) == message


def test_the_caller_chooses_the_error_type() -> None:
    with pytest.raises(CustomError, match="X='y' is not an integer"):
        EnvReader({"X": "y"}, CustomError).integer("X", 0)
