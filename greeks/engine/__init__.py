"""Pure vectorised options engine: prices, Greeks and implied volatility (numpy + scipy only).

See ``docs/greeks-engine.md`` for conventions, units, reason codes and the algorithm.
"""

from greeks.engine._inputs import MODELS, VALID_OPTION_TYPES, option_is_call, option_sign
from greeks.engine.implied import implied_vol
from greeks.engine.pricing import GREEK_KEYS, greeks, price
from greeks.engine.reasons import IVReason, describe_reason

__all__ = [
    "GREEK_KEYS",
    "MODELS",
    "VALID_OPTION_TYPES",
    "IVReason",
    "describe_reason",
    "greeks",
    "implied_vol",
    "option_is_call",
    "option_sign",
    "price",
]
