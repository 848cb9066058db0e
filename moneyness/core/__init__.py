"""Pure moneyness analytics of option chains (numpy only): levels, aggregated Greeks, ATM IV,
options by delta. See ``docs/moneyness.md``."""
