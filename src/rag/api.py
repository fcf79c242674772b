"""The query endpoint: ``POST <prefix>/knowledge-bases/<slug>/query/``.

Body ``{"query": "...", "top_k": 5, "filters": {...}}``; answer ``{"results": [...]}`` with
the passages of :func:`rag.query.search`. Needs an authenticated user holding
``rag.query_knowledgebase``. A bad request is a 400 with the error's code and message; a
provider that is down is a 503 (retry later), never a 500.
"""

from __future__ import annotations

from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.query import MAX_QUERY_LENGTH, MAX_TOP_K, search

_STATUS = {
    ErrorCodes.INVALID_ARGUMENT: status.HTTP_400_BAD_REQUEST,
    ErrorCodes.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ErrorCodes.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
}


class QuerySerializer(serializers.Serializer):
    query = serializers.CharField(max_length=MAX_QUERY_LENGTH, trim_whitespace=True)
    top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=5)
    filters = serializers.DictField(required=False, allow_null=True, default=None)


class CanQueryKnowledgeBases(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("rag.query_knowledgebase"))


class KnowledgeBaseQueryView(APIView):
    permission_classes = [CanQueryKnowledgeBases]

    def post(self, request: Request, slug: str) -> Response:
        serializer = QuerySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            results = search(slug, data["query"], top_k=data["top_k"], filters=data["filters"])
        except AutomateError as exc:
            code = _STATUS.get(exc.code, status.HTTP_503_SERVICE_UNAVAILABLE)
            if exc.code in (ErrorCodes.CONFIGURATION, ErrorCodes.INTERNAL):
                code = status.HTTP_502_BAD_GATEWAY
            return Response({"error": exc.as_dict()}, status=code)
        return Response({"knowledge_base": slug, "results": results})
