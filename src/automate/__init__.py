"""Django Automate: webhooks in, workflows out. Add the apps to ``INSTALLED_APPS`` and
mount :class:`automate.views.WebhookView`."""
