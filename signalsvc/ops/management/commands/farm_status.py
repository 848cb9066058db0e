import json

from django.conf import settings
from django.core.management.base import BaseCommand

from signalsvc.farm.autoscale import farm_status_read
from signalsvc.farm.queues import broker_client


class Command(BaseCommand):
    help = (
        "The worker farm now: live workers, shard owners, non-empty queues with totals, and the "
        "backpressure level (scripts/scale-signal-service.sh status)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="one JSON object instead of the tables"
        )

    def handle(self, *args, as_json=False, **options):
        status = farm_status_read(broker_client())
        if as_json:
            self.stdout.write(json.dumps(status, sort_keys=True))
            return
        for line in render(status):
            self.stdout.write(line)


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    cells = [tuple(str(c) for c in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def render(status: dict) -> list[str]:
    lines = []
    workers = status["workers"]
    lines.append(f"Workers: {len(workers)} live (heartbeat within {settings.FARM_WORKER_TTL_SECONDS:g}s)")
    if workers:
        rows = [
            (
                name,
                w["host"] or "-",
                w["pid"] or "-",
                w["shards"],
                len(w["stolen"]),
                "yes" if w["busy"] else "no",
                f"{w['seen_ago']:.1f}s ago",
            )
            for name, w in workers.items()
        ]
        lines += _table(("WORKER", "HOST", "PID", "SHARDS", "STOLEN", "BUSY", "SEEN"), rows)

    owners = status["owners"]
    owned = sum(owners["per_worker"].values())
    lines.append(
        f"Shard owners: {owned} of {owners['shard_count']} shards assigned, "
        f"{len(owners['unowned'])} unowned, {len(owners['owner_not_live'])} owned by a worker that is not live"
    )
    if owners["per_worker"]:
        lines += _table(("OWNER", "SHARDS"), sorted(owners["per_worker"].items()))
    if owners["unowned"]:
        lines.append("  unowned: " + _ranges(owners["unowned"]))
    if owners["owner_not_live"]:
        lines.append(
            "  owner not live: " + ", ".join(f"{s} ({w})" for s, w in owners["owner_not_live"].items())
        )

    queues, totals = status["queues"], status["totals"]
    lines.append(f"Queues: {len(queues)} non-empty")
    rows = [
        (queue, q["ready"], q["unacked"], f"{q['oldest_age']:.1f}s")
        for queue, q in sorted(
            queues.items(), key=lambda item: (-item[1]["ready"] - item[1]["unacked"], item[0])
        )
    ]
    rows.append(("total", totals["ready"], totals["unacked"], f"{totals['oldest_age']:.1f}s"))
    lines += _table(("QUEUE", "READY", "UNACKED", "OLDEST"), rows)

    backpressure = status["backpressure"]
    lines.append(f"Backpressure: {backpressure['level'] or backpressure['error']}")
    return lines
