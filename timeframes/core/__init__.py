"""Pure timeframe core (no Django): ``grammar`` (timeframe parsing), ``buckets`` (session-anchored
bucketing and reference aggregation, numpy) and ``indicators`` (TA-Lib registry, session VWAP,
supertrend, warm-up policy). See docs/timeframes.md. Submodules are imported explicitly so that
parsing a timeframe does not load TA-Lib."""
