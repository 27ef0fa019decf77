"""The table of the database cache (settings.CACHES): wherever ``migrate`` runs (``make
run``, the compose entrypoint, a team's deployment, the tests), the cache table exists
too. ``createcachetable`` makes the table of every database cache in CACHES and skips
one that exists, so a deployment that points CACHES elsewhere loses nothing."""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0008_run_covering_index"),
    ]

    operations = [
        # Reversing leaves the table (it belongs to the cache, not to this app's models).
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=False),
    ]
