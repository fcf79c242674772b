"""A project that does not mount the REST API."""

urlpatterns: list = []
