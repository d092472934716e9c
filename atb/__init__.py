"""atb: the persistence layer of the atb trading bot."""

__version__ = "0.1.0"
