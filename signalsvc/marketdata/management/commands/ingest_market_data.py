from django.core.management.base import BaseCommand

from signalsvc.marketdata.stream import StreamConsumer


class Command(BaseCommand):
    help = "Consume the market-data stream into 1-minute bars (runs until SIGTERM/SIGINT)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--name", help="consumer name (default ingest-<host>: a restart resumes as the same consumer)"
        )
        parser.add_argument("--batch", type=int, help="entries per read (default MARKET_DATA_BATCH)")

    def handle(self, *args, name=None, batch=None, **options):
        consumer = StreamConsumer(name=name, batch=batch)
        consumer.install_signal_handlers()
        consumer.run()
