"""The REST API (Django REST framework) with an OpenAPI schema (drf-spectacular).

Mount it with ``path("api/", include("automate.api.urls"))``: events, workflows, runs,
replay, and the schema at ``api/schema/``. Authentication is the project's DRF default
(session and basic auth unless configured otherwise). The schema needs drf-spectacular's
schema class::

    INSTALLED_APPS += ["drf_spectacular"]
    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
"""
