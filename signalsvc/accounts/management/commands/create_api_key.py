from django.core.management.base import BaseCommand

from signalsvc.accounts.services import api_key_create, subscription_get_or_create


class Command(BaseCommand):
    help = "Create an API key and print it once (only its digest is stored)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--subscription", default="default", help="subscription name (created if missing)"
        )
        parser.add_argument("--tier", default="standard", help="tier name (created with defaults if missing)")
        parser.add_argument("--name", default="cli", help="label for the key")
        parser.add_argument("--rpm", type=int, help="requests/minute for a newly created tier")
        parser.add_argument("--write", action="store_true", help="allow posting market data")

    def handle(self, *args, subscription, tier, name, rpm, write, **options):
        sub = subscription_get_or_create(name=subscription, tier_name=tier, requests_per_minute=rpm)
        key, raw = api_key_create(subscription=sub, name=name, can_write=write)
        self.stderr.write(
            f"key {key.prefix} for subscription '{sub.name}' (tier {sub.tier.name}); shown once:"
        )
        self.stdout.write(raw)
