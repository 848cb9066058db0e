import datetime as dt

from django.core.management.base import BaseCommand

from signalsvc.marketdata.tasks import run_partitions_upkeep


class Command(BaseCommand):
    help = "Create time partitions ahead and drop expired ones for every partitioned table."

    def handle(self, *args, **options):
        report = run_partitions_upkeep(now=dt.datetime.now(dt.UTC))
        for table, dropped in report.items():
            self.stdout.write(f"{table}: partitions ready; dropped {len(dropped)} expired")
