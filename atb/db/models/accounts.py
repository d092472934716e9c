"""Account state over time: periodic balance/equity snapshots and the current-balance ledger."""

from __future__ import annotations

import peewee as pw

from atb.db.fields import CountField, JsonField, MoneyField, UTCDateTimeField, server_default
from atb.db.models.base import BaseModel, request_key
from atb.db.models.trading import session_link


class AccountHistory(BaseModel):
    """One append-only snapshot of the account: balance, equity, margin, P&L, drawdown, exposure."""

    timestamp = UTCDateTimeField(index=True)
    balance = MoneyField()
    equity = MoneyField()
    margin_used = MoneyField(null=True, server_default="0")
    margin_available = MoneyField(null=True)
    total_pnl = MoneyField(null=True, server_default="0")
    daily_pnl = MoneyField(null=True, server_default="0")
    drawdown = MoneyField(null=True, server_default="0")
    open_positions = CountField(null=True)
    total_exposure = MoneyField(null=True, server_default="0")
    # Indexed by the composite (session_id, timestamp) below.
    session = session_link("account_history", index=False)
    created_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "account_history"
        indexes = ((("session_id", "timestamp"), False),)


class AccountBalance(BaseModel):
    """One entry of the balance ledger; the newest row of a session (by last_updated) is its balance."""

    base_currency = pw.CharField(
        max_length=10, default="USD", constraints=[server_default("'USD'")]
    )
    # The reference stores these three as binary floats; atb keeps them exact.
    total_balance = MoneyField()
    available_balance = MoneyField()
    reserved_balance = MoneyField(null=True, server_default="0")
    asset_balances = JsonField(null=True, default=dict)
    last_updated = UTCDateTimeField(server_now=True)
    updated_by = pw.CharField(
        max_length=50, null=True, default="system", constraints=[server_default("'system'")]
    )
    update_reason = pw.CharField(max_length=200, null=True)
    # Indexed by the composite (session_id, last_updated) below.
    session = session_link("account_balances", index=False)
    created_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "account_balances"
        indexes = ((("session_id", "last_updated"), False),)
