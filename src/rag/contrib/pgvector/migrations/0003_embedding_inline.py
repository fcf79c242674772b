"""Keep each embedding in its row (``STORAGE MAIN``) rather than in the TOAST table.

A 384-dimension vector is 1,544 bytes: with a passage's text and metadata the row passes
PostgreSQL's 2 kB threshold, and the default storage then moved the vector out, so every
exact search (a selective filter, see ``rag.providers.pgvector``) paid a TOAST lookup per
matching row: 3.2 ms for 555 rows where the vectors in their rows take 1.1 ms. The text
and metadata are moved out first now. Rows already stored keep their layout until they
are written again.
"""

from django.db import migrations


def inline(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE rag_pgvector_pgvectorentry ALTER COLUMN embedding SET STORAGE MAIN"
        )


def external(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE rag_pgvector_pgvectorentry ALTER COLUMN embedding SET STORAGE EXTERNAL"
        )


class Migration(migrations.Migration):
    dependencies = [("rag_pgvector", "0002_metadata_gin")]

    operations = [migrations.RunPython(inline, external, elidable=False)]
