"""The REST API (Django REST framework) with an OpenAPI schema (drf-spectacular).

Mount it with ``path("api/", include("automate.api.urls"))``: events, workflows, runs,
replay, and the schema at ``api/schema/``. It needs no DRF settings; see docs/api.md.
"""
