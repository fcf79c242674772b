"""Admin for the ``automate`` app."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from automate.models import ConnectionProfile


class ConnectionProfileForm(forms.ModelForm):
    """Secrets are write-only: new ones are added, existing ones only listed or removed."""

    new_webhook_secret = forms.CharField(
        label=_("Add a webhook secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "A secret:// reference, or the secret itself (stored encrypted, never shown "
            "again). It becomes the newest; older ones keep working until removed."
        ),
    )
    remove_webhook_secrets = forms.MultipleChoiceField(
        label=_("Remove webhook secrets"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ConnectionProfile
        fields = ["key", "connector_key", "name", "enabled", "config"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["remove_webhook_secrets"].choices = [
            (str(i), label) for i, label in enumerate(self.instance.describe_webhook_secrets())
        ]

    def clean(self):
        cleaned = super().clean()
        for index in sorted(
            (int(i) for i in cleaned.get("remove_webhook_secrets", [])), reverse=True
        ):
            self.instance.remove_webhook_secret(index)
        if cleaned.get("new_webhook_secret"):
            self.instance.add_webhook_secret(cleaned["new_webhook_secret"])
        return cleaned


@admin.register(ConnectionProfile)
class ConnectionProfileAdmin(admin.ModelAdmin):
    form = ConnectionProfileForm
    list_display = ["key", "connector_key", "name", "enabled", "secret_count", "updated_at"]
    list_filter = ["enabled", "connector_key"]
    search_fields = ["key", "name", "connector_key"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description=_("webhook secrets"))
    def secret_count(self, obj: ConnectionProfile) -> int:
        return len(obj.webhook_secrets)


from automate.mcp import admin as _mcp_admin  # noqa: E402,F401
