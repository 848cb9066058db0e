from django.core.management.base import BaseCommand, CommandError

from signalsvc.accounts.services import SubscriptionMismatch, api_key_create, subscription_get_or_create


class Command(BaseCommand):
    help = "Create an API key and print it once (only its digest is stored)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--subscription", default="default", help="subscription name (created if missing)"
        )
        parser.add_argument(
            "--tier",
            help="tier of a new subscription (created with defaults if missing; default 'standard'); "
            "for an existing subscription it must be the one it has",
        )
        parser.add_argument("--name", default="cli", help="label for the key")
        parser.add_argument(
            "--rpm", type=int, help="requests/minute of a new tier (must match an existing one)"
        )
        parser.add_argument("--write", action="store_true", help="allow posting market data")

    def handle(self, *args, subscription, tier, name, rpm, write, **options):
        try:
            sub = subscription_get_or_create(name=subscription, tier_name=tier, requests_per_minute=rpm)
        except SubscriptionMismatch as exc:
            raise CommandError(str(exc)) from None
        key, raw = api_key_create(subscription=sub, name=name, can_write=write)
        self.stderr.write(
            f"key {key.prefix} for subscription '{sub.name}' (tier {sub.tier.name}, "
            f"{sub.tier.requests_per_minute}/min); shown once:"
        )
        self.stdout.write(raw)
