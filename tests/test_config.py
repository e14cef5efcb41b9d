from dataclasses import dataclass

import pytest

from genlab.config import apply_overrides, parse_key_values
from genlab.errors import UserError
from genlab.train.config import TrainConfig, parse_duration


@dataclass
class Cfg:
    a: int = 1
    b: float = 0.5
    c: bool = False
    d: tuple[int, ...] = (1, 2)
    e: str | None = None


def test_typed_overrides_from_strings():
    cfg = apply_overrides(Cfg(), {"a": "3", "b": "1e-3", "c": "true", "d": "4,5,6", "e": "none"})
    assert cfg == Cfg(a=3, b=1e-3, c=True, d=(4, 5, 6), e=None)


@pytest.mark.parametrize(
    "key,value,needle",
    [("a", "1.5", "expected an integer"), ("b", "abc", "expected a number"), ("b", "nan", "finite"),
     ("c", "maybe", "true or false"), ("zz", "1", "unknown option 'zz'")],
)
def test_bad_values_name_the_field(key, value, needle):
    with pytest.raises(UserError, match=needle):
        apply_overrides(Cfg(), {key: value})


def test_unknown_key_suggests_close_name():
    with pytest.raises(UserError, match="did you mean 'lr'"):
        apply_overrides(TrainConfig(), {"lrr": "1"})


def test_key_value_parsing():
    assert parse_key_values(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UserError, match="expected key=value"):
        parse_key_values(["oops"])


@pytest.mark.parametrize("text,seconds", [("300", 300), ("90s", 90), ("5m", 300), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "-5m", "0", "inf"])
def test_parse_duration_rejects(text):
    with pytest.raises(UserError, match="time budget"):
        parse_duration(text)


@pytest.mark.parametrize("overrides", [{"steps": -1}, {"lr": 0}, {"ema_decay": 1.0}, {"device": "tpu"}])
def test_train_config_validation(overrides):
    with pytest.raises(UserError):
        apply_overrides(TrainConfig(), overrides)
