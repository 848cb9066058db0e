from django.core.management.base import BaseCommand, CommandError

from signalsvc.instruments.client import InstrumentServiceError
from signalsvc.instruments.remote import instrument_service
from signalsvc.instruments.services import instruments_upsert


class Command(BaseCommand):
    help = "Pull the instrument master from INSTRUMENT_SERVICE_URL into the registry (upsert by key)."

    def add_arguments(self, parser):
        parser.add_argument("--exchange")
        parser.add_argument("--symbol")

    def handle(self, *args, exchange=None, symbol=None, **options):
        client = instrument_service()
        if client is None:
            raise CommandError("INSTRUMENT_SERVICE_URL is not set")
        try:
            listing = client.fetch_instruments(exchange=exchange, symbol=symbol)
        except InstrumentServiceError as exc:
            raise CommandError(f"instrument service: {exc}") from exc
        count = instruments_upsert(specs=listing.instruments)
        self.stdout.write(
            f"synced {count} instruments from {listing.pages} page(s); skipped {len(listing.skipped)} invalid records"
        )
