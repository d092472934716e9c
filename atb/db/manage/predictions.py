"""The ML prediction cache: upsert by key, never serve an expired entry, keep the table bounded.

Size limit: `prediction_cache_max_entries` (default from ATB_PREDICTION_CACHE_MAX_ENTRIES, else
10,000; 0/"none" turns it off). Trimming is one DELETE of everything beyond the limit, least
recently used first. Running it after every insert would add a sort of the whole table to each
write, so a manager trims on its first insert and then every `limit // 100` inserts (at least every
insert, at most every 100): the table overshoots the limit by at most ~1% per writing process.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, cast

import peewee as pw

from .. import validate
from ..errors import ConfigurationError, ValidationError
from ..fields import utc_now
from ..models import PredictionCache
from .base import ManagerBase
from .statements import Slot, Statement, insert_query, literal, rows_as_dicts

PC = PredictionCache
MAX_ENTRIES_ENV = "ATB_PREDICTION_CACHE_MAX_ENTRIES"
DEFAULT_MAX_ENTRIES = 10_000
_UNSET = object()

# Upsert on the key; a replaced entry keeps its hit count (access_count is not preserved).
_CACHED = (
    "cache_key", "model_name", "features_hash", "config_hash", "predicted_price", "confidence",
    "direction", "created_at", "expires_at", "last_accessed", "access_count",
)  # fmt: skip
_UPSERT = Statement(
    lambda: insert_query(PC, _CACHED).on_conflict(
        conflict_target=[PC.cache_key],
        preserve=[PC._meta.fields[name] for name in _CACHED[1:-1]],
    )
)
# A hit: the unexpired entry's counter bumped, every column returned, in one statement.
_HIT = Statement(
    lambda: (
        pw.ModelUpdate(
            PC,
            {
                PC.access_count: pw.fn.COALESCE(PC.access_count, literal("0")) + literal("1"),
                PC.last_accessed: Slot("now", PC.last_accessed),
            },
        )
        .where((PC.cache_key == Slot("key")) & (PC.expires_at > Slot("now", PC.expires_at)))
        .returning(*PC._meta.sorted_fields)
    )
)


def max_entries_from_env(environ: dict[str, str] | None = None) -> int | None:
    """The configured cache size limit; None means unlimited."""
    raw = (os.environ if environ is None else environ).get(MAX_ENTRIES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_ENTRIES
    if raw.lower() in ("0", "none", "off", "unlimited"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 1:
        raise ConfigurationError(
            f"{MAX_ENTRIES_ENV}={raw!r} is not a positive whole number (or 0/none for no limit)"
        )
    return value


# How each row this module writes is validated: the model's columns plus these rules.
_PREDICTION_ROW = validate.Cleaner(
    PC, {"predicted_price": {"non_negative": True}, "confidence": {"non_negative": True}}
)


class PredictionCacheMixin(ManagerBase):
    """cache_prediction, get_cached_prediction, invalidation, purging and statistics."""

    _prediction_cache_max_entries: Any = _UNSET
    _prediction_inserts_since_trim: int | None = None

    @property
    def prediction_cache_max_entries(self) -> int | None:
        """The cache size limit (None: unlimited); read from the environment on first use."""
        if self._prediction_cache_max_entries is _UNSET:
            self._prediction_cache_max_entries = max_entries_from_env()
        return self._prediction_cache_max_entries

    @prediction_cache_max_entries.setter
    def prediction_cache_max_entries(self, value: int | None) -> None:
        self._prediction_cache_max_entries = validate.integer(
            "prediction_cache_max_entries", value, optional=True, minimum=1
        )
        self._prediction_inserts_since_trim = None  # trim on the next insert

    def cache_prediction(
        self,
        cache_key: str,
        model_name: str,
        features_hash: str,
        config_hash: str,
        predicted_price: Any,
        confidence: Any,
        direction: Any,
        ttl_seconds: Any = 60,
    ) -> int:
        """Store (or replace) a prediction under `cache_key` for `ttl_seconds`. Returns the row id.

        One INSERT ... ON CONFLICT (cache_key) DO UPDATE; a replaced entry keeps its hit count.
        """
        ttl = validate.integer("ttl_seconds", ttl_seconds, minimum=1)
        now = utc_now()
        row = _PREDICTION_ROW(
            cache_key=cache_key,
            model_name=model_name,
            features_hash=features_hash,
            config_hash=config_hash,
            predicted_price=predicted_price,
            confidence=confidence,
        )
        row.update(
            direction=_direction(direction),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl),
            last_accessed=now,
            access_count=0,
        )
        entry_id = self._run_statement(lambda: _UPSERT.scalar([row[name] for name in _CACHED]))
        if self._trim_due():
            self.trim_prediction_cache()
        return entry_id

    def get_cached_prediction(self, cache_key: str) -> dict[str, Any] | None:
        """The unexpired entry for `cache_key` (its hit count bumped), or None.

        One UPDATE ... WHERE expires_at > now RETURNING: an expired entry is never returned.
        """
        key = validate.column(PC.cache_key, cache_key)
        rows = self._run_statement(lambda: rows_as_dicts(_HIT.execute(key=key, now=utc_now()), PC))
        return _entry_dict(rows[0]) if rows else None

    def invalidate_predictions(self, model_name: str, config_hash: str | None = None) -> int:
        """Delete a model's entries (only those of one config when given); returns rows deleted."""
        condition = PC.model_name == validate.column(PC.model_name, model_name)
        if config_hash is not None:
            condition &= PC.config_hash == validate.column(PC.config_hash, config_hash)
        return self._run_statement(PredictionCache.delete().where(condition).execute)

    def purge_expired_predictions(self) -> int:
        """Delete every expired entry; returns rows deleted."""
        expired = PredictionCache.delete().where(PredictionCache.expires_at <= utc_now())
        return self._run_statement(expired.execute)

    def trim_prediction_cache(self, max_entries: int | None = None) -> int:
        """Delete the least recently used entries beyond the limit, in one statement."""
        limit = (
            self.prediction_cache_max_entries
            if max_entries is None
            else validate.integer("max_entries", max_entries, minimum=1)
        )
        self._prediction_inserts_since_trim = 0
        if limit is None:
            return 0
        # Served by the last_accessed index; peewee writes SQLite's required LIMIT -1 itself.
        beyond = (
            PredictionCache.select(PredictionCache.id)
            .order_by(PredictionCache.last_accessed.desc(), PredictionCache.id.desc())
            .offset(limit)
        )
        return self._run_statement(
            PredictionCache.delete().where(PredictionCache.id.in_(beyond)).execute
        )

    def prediction_cache_stats(self) -> dict[str, Any]:
        """Entry counts (total, active, expired), hits, per model, and the size limit; one query."""
        now = utc_now()
        expired = pw.Case(None, [(PredictionCache.expires_at <= now, 1)], 0)
        query = (
            PredictionCache.select(
                PredictionCache.model_name,
                pw.fn.COUNT(PredictionCache.id).alias("entries"),
                pw.fn.SUM(expired).alias("expired"),
                pw.fn.SUM(pw.fn.COALESCE(PredictionCache.access_count, 0)).alias("hits"),
            )
            .group_by(PredictionCache.model_name)
            .order_by(PredictionCache.model_name)
            .dicts()
        )
        rows: list[dict[str, Any]] = self._run_statement(lambda: list(cast(Any, query)))
        by_model = {
            row["model_name"]: {
                "entries": int(row["entries"]),
                "active": int(row["entries"]) - int(row["expired"] or 0),
                "expired": int(row["expired"] or 0),
                "hits": int(row["hits"] or 0),
            }
            for row in rows
        }
        total = sum(m["entries"] for m in by_model.values())
        expired_total = sum(m["expired"] for m in by_model.values())
        return {
            "total": total,
            "active": total - expired_total,
            "expired": expired_total,
            "hits": sum(m["hits"] for m in by_model.values()),
            "by_model": by_model,
            "max_entries": self.prediction_cache_max_entries,
        }

    def _trim_due(self) -> bool:
        limit = self.prediction_cache_max_entries
        if limit is None:
            return False
        count = self._prediction_inserts_since_trim
        if count is None:
            return True
        self._prediction_inserts_since_trim = count + 1
        return self._prediction_inserts_since_trim >= max(1, min(100, limit // 100))


def _direction(value: Any) -> int:
    try:
        return validate.integer("direction", value, minimum=-1, maximum=1)
    except ValidationError:
        raise ValidationError("direction", f"{value!r} is not allowed; allowed: -1, 0, 1") from None


def _entry_dict(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": entry["id"],
        "cache_key": entry["cache_key"],
        "model_name": entry["model_name"],
        "features_hash": entry["features_hash"],
        "config_hash": entry["config_hash"],
        "predicted_price": float(entry["predicted_price"]),
        "confidence": float(entry["confidence"]),
        "direction": int(entry["direction"]),
        "created_at": entry["created_at"],
        "expires_at": entry["expires_at"],
        "access_count": int(entry["access_count"] or 0),
        "last_accessed": entry["last_accessed"],
    }
