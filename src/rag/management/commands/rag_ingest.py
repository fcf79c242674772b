"""``manage.py rag_ingest --kb SLUG PATH...``: put text and Markdown files into a knowledge base."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from automate_core.providers.errors import AutomateError
from rag.ingest import IngestProgress, ingest_paths
from rag.models import KnowledgeBase

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Ingest .md, .markdown and .txt files (folders recursively) into a knowledge base."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--kb", required=True, help="The knowledge base's slug.")
        parser.add_argument(
            "--force", action="store_true", help="Re-embed files whose content is unchanged."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        parser.add_argument(
            "--threads",
            type=int,
            help="At most this many embedding threads (default: as many as the embedding "
            "provider can use; for the local model, torch's intra-op threads).",
        )

    def _progress(self, step: IngestProgress) -> None:
        done, total = step.documents_done, step.documents_total
        filled = BAR_WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        end = "\n" if done == total else ""
        name = step.source.rsplit("/", 1)[-1][:40]
        self.stderr.write(
            f"\r[{bar}] {done}/{total} files, {step.passages_done} passages, "
            f"{step.rate:.1f} passages/s {name:<40}",
            ending=end,
        )
        self.stderr.flush()

    def handle(self, *args, **options) -> None:
        kb = KnowledgeBase.objects.filter(slug=options["kb"]).first()
        if kb is None:
            known = ", ".join(KnowledgeBase.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no knowledge base {options['kb']!r} (known: {known})")
        show = not options["no_progress"]
        try:
            results = ingest_paths(
                kb,
                options["paths"],
                force=options["force"],
                on_progress=self._progress if show else None,
                threads=options["threads"],
            )
        except AutomateError as exc:
            raise CommandError(str(exc)) from exc
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        chunks = 0
        for result in results:
            counts[result.status] += 1
            chunks += result.chunks
            if result.stale_ids:
                self.stderr.write(
                    f"{result.source}: the store kept {len(result.stale_ids)} old passages "
                    "it cannot delete"
                )
        self.stdout.write(
            f"{len(results)} files into {kb.slug}: {counts['created']} created, "
            f"{counts['updated']} updated, {counts['unchanged']} unchanged; {chunks} chunks"
        )
