"""ML predictions: a cache of inference results and accuracy statistics per model and horizon."""

from __future__ import annotations

import peewee as pw

from atb.db.fields import CountField, MoneyField, UTCDateTimeField
from atb.db.models.base import BaseModel


class PredictionCache(BaseModel):
    """One cached inference result, keyed by features, model and config, so repeats skip inference."""

    _touch_on_update = ("last_accessed",)

    cache_key = pw.CharField(max_length=255, unique=True)
    # Indexed by the composite (model_name, config_hash) below.
    model_name = pw.CharField(max_length=100)
    features_hash = pw.CharField(max_length=64, index=True)
    predicted_price = MoneyField()
    confidence = MoneyField()
    direction = pw.IntegerField()
    created_at = UTCDateTimeField(server_now=True)
    expires_at = UTCDateTimeField(index=True)
    access_count = CountField(null=True)
    last_accessed = UTCDateTimeField(server_now=True, null=True, index=True)
    config_hash = pw.CharField(max_length=64)

    class Meta:
        table_name = "prediction_cache"
        indexes = ((("model_name", "config_hash"), False),)


class PredictionPerformance(BaseModel):
    """Accuracy and calibration statistics of one prediction model at one horizon, at a point in time."""

    timestamp = UTCDateTimeField(index=True)
    model_name = pw.CharField(max_length=100)
    horizon = CountField(null=True, server_default=1)
    mae = MoneyField(null=True)
    rmse = MoneyField(null=True)
    mape = MoneyField(null=True)
    ic = MoneyField(null=True)
    mean_pred = MoneyField(null=True)
    std_pred = MoneyField(null=True)
    mean_real = MoneyField(null=True)
    std_real = MoneyField(null=True)
    strategy_name = pw.CharField(max_length=100)
    symbol = pw.CharField(max_length=20)
    timeframe = pw.CharField(max_length=10)
    created_at = UTCDateTimeField(server_now=True, null=True)

    class Meta:
        table_name = "prediction_performance"
        indexes = ((("model_name", "horizon"), False),)
