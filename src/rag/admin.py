"""Admin for knowledge bases (with a "test query" page), documents and their chunks."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from automate_core.providers.errors import AutomateError
from rag.ingest import delete_document, delete_knowledge_base
from rag.models import Chunk, Document, KnowledgeBase
from rag.query import MAX_QUERY_LENGTH, MAX_TOP_K, search


class TestQueryForm(forms.Form):
    query = forms.CharField(max_length=MAX_QUERY_LENGTH, widget=forms.TextInput(attrs={"size": 80}))
    top_k = forms.IntegerField(min_value=1, max_value=MAX_TOP_K, initial=5)
    filters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text='Optional JSON, e.g. {"lang": "en"}.',
    )

    def clean_filters(self) -> dict | None:
        raw = self.cleaned_data.get("filters", "").strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Use a JSON object.")
        return value


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "embedding_provider",
        "retrieval_provider",
        "document_count",
        "query_link",
    ]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description="documents")
    def document_count(self, obj: KnowledgeBase) -> int:
        return obj.documents.count()

    def get_list_display(self, request: HttpRequest):
        shown = list(super().get_list_display(request))
        if not self.has_change_permission(request):
            shown.remove("query_link")
        return shown

    @admin.display(description="test")
    def query_link(self, obj: KnowledgeBase) -> str:
        url = reverse("admin:rag_knowledgebase_test_query", args=[obj.pk])
        return format_html('<a href="{}">Test query</a>', url)

    def get_urls(self):
        custom = [
            path(
                "<int:pk>/test-query/",
                self.admin_site.admin_view(self.test_query_view),
                name="rag_knowledgebase_test_query",
            )
        ]
        return custom + super().get_urls()

    def test_query_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        kb = get_object_or_404(KnowledgeBase, pk=pk)
        # A test query calls the embedding provider (and spends its quota): it is an
        # action on the knowledge base, for users who may change it, not view-only staff.
        if not self.has_change_permission(request, kb):
            raise PermissionDenied
        results = None
        form = TestQueryForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                results = search(
                    kb,
                    form.cleaned_data["query"],
                    top_k=form.cleaned_data["top_k"],
                    filters=form.cleaned_data["filters"],
                )
            except AutomateError as exc:
                form.add_error(None, str(exc))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": kb,
            "title": f"Test query: {kb.name}",
            "form": form,
            "results": results,
        }
        return TemplateResponse(request, "admin/rag/knowledgebase/test_query.html", context)

    def delete_model(self, request: HttpRequest, obj: KnowledgeBase) -> None:
        delete_knowledge_base(obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for kb in queryset:
            delete_knowledge_base(kb)


class ChunkInline(admin.TabularInline):
    model = Chunk
    fields = ("ordinal", "vector_id", "content")
    readonly_fields = ("ordinal", "vector_id", "content")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["source", "title", "knowledge_base", "chunk_count", "updated_at"]
    list_filter = ["knowledge_base"]
    search_fields = ["source", "title"]
    readonly_fields = ["knowledge_base", "source", "content_hash", "created_at", "updated_at"]
    fields = [
        "knowledge_base",
        "source",
        "title",
        "metadata",
        "content",
        "content_hash",
        "created_at",
        "updated_at",
    ]
    inlines = [ChunkInline]

    @admin.display(description="chunks")
    def chunk_count(self, obj: Document) -> int:
        return obj.chunks.count()

    def has_add_permission(self, request) -> bool:
        # Documents come in through ingestion (rag_ingest, the API), which embeds them.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        delete_document(obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for document in queryset:
            delete_document(document)
        messages.info(request, "Their passages were removed from the store too.")
