"""A project app's own credential field, registered for key rotation in ``ready()``."""

from django.db import models


class Credential(models.Model):
    """Holds a sealed value (``fernet:...``) or a ``secret://`` reference, like an API key."""

    name = models.CharField(max_length=100)
    token = models.CharField(max_length=500, blank=True, default="")

    def __str__(self) -> str:
        return self.name
