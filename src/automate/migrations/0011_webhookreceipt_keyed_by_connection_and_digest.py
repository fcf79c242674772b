"""Webhook receipts are keyed by (connection, digest), their lookup, instead of a surrogate
id plus a unique constraint: one index less for every webhook to write.

Django cannot change a primary key in place, so the table is dropped and created again.
Receipts only matter within AUTOMATE["WEBHOOK_REPLAY_WINDOW_SECONDS"]: a body captured
before the migration can be replayed once after it, within that window. Unapplying it
drops the new table the same way.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("automate", "0010_receipt_outbox_item_unconstrained"),
    ]

    operations = [
        migrations.DeleteModel(name="WebhookReceipt"),
        migrations.CreateModel(
            name="WebhookReceipt",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "connection",
                        "digest",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("connection", models.CharField(max_length=100, verbose_name="connection")),
                ("digest", models.CharField(max_length=64, verbose_name="digest")),
                ("seen_at", models.DateTimeField(db_index=True, verbose_name="seen at")),
                (
                    "outbox_item",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="automate_core.outboxitem",
                    ),
                ),
            ],
            options={
                "verbose_name": "webhook receipt",
                "verbose_name_plural": "webhook receipts",
            },
        ),
    ]
