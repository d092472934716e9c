"""Validation read from the models: each column's check is chosen once and kept, and a kept
check still names its own field and applies its own rules."""

import decimal

import pytest

from atb.db import ValidationError, validate
from atb.db.enums import PositionSide
from atb.db.models import SystemEvent, Trade


def test_the_same_field_and_rules_reuse_one_check():
    assert validate.column_check(Trade.symbol) is validate.column_check(Trade.symbol)
    assert validate.column_check(Trade.size, positive=True) is validate.column_check(
        Trade.size, positive=True
    )


def test_a_kept_check_keeps_its_own_label_and_rules():
    plain = validate.column_check(Trade.pnl)
    positive = validate.column_check(Trade.pnl, positive=True)
    renamed = validate.column_check(Trade.pnl, name="profit", positive=True)
    assert len({id(plain), id(positive), id(renamed)}) == 3
    assert plain(decimal.Decimal("-1")) == decimal.Decimal("-1")
    with pytest.raises(ValidationError, match="pnl.*greater than 0"):
        positive(decimal.Decimal("-1"))
    with pytest.raises(ValidationError, match="profit.*greater than 0"):
        renamed(decimal.Decimal("-1"))


def test_rules_that_cannot_be_hashed_still_work_uncached():
    aliases = {"UP": PositionSide.LONG}  # a caller's own mapping: a fresh check, never stale
    check = validate.column_check(Trade.side, aliases=aliases)
    assert check("up") is PositionSide.LONG
    down = validate.column_check(Trade.side, aliases={"DOWN": PositionSide.SHORT})
    assert down("down") is PositionSide.SHORT
    with pytest.raises(ValidationError, match="side"):
        down("up")


def test_a_cleaner_keeps_its_checks_and_refuses_bad_values_by_name():
    cleaner = validate.Cleaner(SystemEvent, {"message": {"optional": False}})
    assert cleaner(message="ok") == {"message": "ok"}
    kept = dict(cleaner._checks)
    assert cleaner.clean({"message": "again"}) == {"message": "again"}
    assert cleaner._checks == kept
    with pytest.raises(ValidationError, match="message.*required"):
        cleaner(message=None)
    with pytest.raises(ValidationError, match="component.*at most 100"):
        cleaner(component="x" * 101)
    with pytest.raises(KeyError):
        cleaner(no_such_column=1)
