"""The README's line, next to a view of the project's own that uses DRF's schema class."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView


class ProjectView(APIView):
    def get(self, request):
        return Response({"hello": "project"})


urlpatterns = [
    path("hello/", ProjectView.as_view()),
    path("api/", include("automate.api.urls")),
]
