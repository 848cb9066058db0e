from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from signalsvc.farm.autoscale import Autoscaler, backend_create, backend_name, policy_from_settings
from signalsvc.farm.ownership import workers_read
from signalsvc.farm.queues import broker_client


class Command(BaseCommand):
    help = (
        "Set the number of worker replicas from the broker backlog, CPU and memory, every "
        "AUTOSCALER_INTERVAL_SECONDS, until SIGTERM/SIGINT (docs/farm.md 'Autoscaling')."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="decide (and apply) once, then exit")
        parser.add_argument(
            "--backend", help="docker-compose | kubernetes | dry-run (default: AUTOSCALER_BACKEND)"
        )
        parser.add_argument("--interval", type=float, help="seconds between decisions (default: setting)")

    def handle(self, *args, once=False, backend=None, interval=None, **options):
        try:
            name = backend_name(backend or settings.AUTOSCALER_BACKEND)
            policy = policy_from_settings()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        interval = interval or settings.AUTOSCALER_INTERVAL_SECONDS
        client = broker_client()
        live = len(workers_read(client, ttl=settings.FARM_WORKER_TTL_SECONDS))
        try:
            scaler_backend = backend_create(name, live_workers=live)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        scaler = Autoscaler(client=client, backend=scaler_backend, policy=policy, report=self._report)
        if once:
            scaler.step()
            return
        scaler.install_signal_handlers()
        self._report(
            f"autoscaler: backend={name} every {interval:g}s, workers {policy.min_workers}..{policy.max_workers}, "
            f"{policy.target_per_worker} tasks per worker, cpu/memory up > {policy.up_threshold:g}% "
            f"down < {policy.down_threshold:g}%, cooldowns up {policy.up_cooldown:g}s down {policy.down_cooldown:g}s"
        )
        scaler.run(interval)
        self._report("autoscaler: stopped")

    def _report(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
