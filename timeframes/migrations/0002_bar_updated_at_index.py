from django.db import migrations

# The incremental rollup refresh and the bar cache look for 1-minute bars changed since a
# watermark (market_bar_1m.updated_at > W) every minute, and every bar read checks its range for
# such bars. Without this index both are full scans of market_bar_1m. It belongs to the bars
# table (signalsvc.marketdata) and lives here only because this app is its only user so far.
# On a large existing table build it per partition with CREATE INDEX CONCURRENTLY first.
CREATE = "CREATE INDEX IF NOT EXISTS market_bar_1m_updated_at ON market_bar_1m (updated_at)"


class Migration(migrations.Migration):
    dependencies = [("timeframes", "0001_initial"), ("marketdata", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, "DROP INDEX IF EXISTS market_bar_1m_updated_at")]
