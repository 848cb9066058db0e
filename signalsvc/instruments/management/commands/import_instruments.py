from django.core.management.base import BaseCommand, CommandError

from signalsvc.instruments.csv_import import COLUMNS, read_instruments_csv
from signalsvc.instruments.services import instruments_upsert


class Command(BaseCommand):
    help = (
        "Import an instrument-master CSV (columns: "
        + ", ".join(COLUMNS)
        + "; key required). All rows are validated first; nothing is written if any is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            with open(file, newline="", encoding="utf-8") as handle:
                specs, errors = read_instruments_csv(handle)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        if errors:
            raise CommandError("nothing imported:\n" + "\n".join(errors[:50]))
        count = instruments_upsert(specs=specs)
        self.stdout.write(f"imported {count} instruments")
