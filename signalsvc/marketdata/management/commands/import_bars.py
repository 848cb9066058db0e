import csv

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from signalsvc.instruments.selectors import instrument_ids
from signalsvc.marketdata.services import BarIn, bars_upsert
from signalsvc.marketdata.validation import BAR_FIELDS, validate_bars


class Command(BaseCommand):
    help = (
        "Import 1-minute bars from CSV. Header: "
        + ", ".join(BAR_FIELDS)
        + " (volume and oi optional). timestamp is the minute start in ISO-8601 (naive = Asia/Kolkata). "
        "All rows are validated first; nothing is written if any row is invalid. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--chunk", type=int, default=50_000, help="rows per COPY transaction")

    def handle(self, *args, file, chunk, **options):
        try:
            with open(file, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        drafts, problems = validate_bars(
            rows, market_tz=settings.MARKET_TIMEZONE, from_text=True, first_row=2
        )
        if problems:
            lines = [f"row {p['index']}: {'; '.join(p['errors'])}" for p in problems]
            raise CommandError("nothing imported:\n" + "\n".join(lines))
        ids = instrument_ids(keys={d.key for d in drafts})
        unknown = sorted({d.key for d in drafts} - set(ids))
        if unknown:
            raise CommandError(f"nothing imported: unknown instruments {unknown[:20]}")
        bars = [BarIn(ids[d.key], d.ts, d.open, d.high, d.low, d.close, d.volume, d.oi) for d in drafts]
        for start in range(0, len(bars), chunk):
            bars_upsert(bars=bars[start : start + chunk])
        self.stdout.write(f"imported {len(bars)} bars")
