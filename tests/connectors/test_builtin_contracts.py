"""The receive-only built-ins pass the contract kit too (the API connectors have their own
files: test_jira.py, test_slack.py, test_github.py, test_http.py).

They declare no actions and need no configuration, so the kit switches those rules off
and checks their specs, ``normalize_error`` and signatures both ways.
"""

from __future__ import annotations

import base64
import time

from automate_connectors.builtin.generic_hmac import GenericHmacConnector
from automate_connectors.builtin.standard_webhooks import StandardWebhooksConnector
from automate_connectors.builtin.stripe import StripeConnector
from automate_testing.contracts import ConnectorContractTest

from .signing import generic_signature, standard_signature, stripe_header


class TestBuiltinStripeContract(ConnectorContractTest):
    connector_class = StripeConnector
    empty_config_is_valid = True  # the signing secret is a profile secret, not config
    webhook_secrets = ("whsec_contract",)

    def get_config(self):
        return {}

    def sign_webhook(self, raw_body, secret):
        return {"Stripe-Signature": stripe_header(secret, raw_body, int(time.time()))}


class TestBuiltinStandardWebhooksContract(ConnectorContractTest):
    connector_class = StandardWebhooksConnector
    empty_config_is_valid = True
    # Standard Webhooks secrets are base64 keys with a whsec_ prefix.
    webhook_secrets = ("whsec_" + base64.b64encode(b"contract-test-key-0123456789").decode(),)

    def get_config(self):
        return {}

    def sign_webhook(self, raw_body, secret):
        if not secret.startswith("whsec_"):  # the kit's "other secret": make it a key
            secret = "whsec_" + base64.b64encode(secret.encode()).decode()
        now = int(time.time())
        return {
            "webhook-id": "msg_contract",
            "webhook-timestamp": str(now),
            "webhook-signature": standard_signature(secret, "msg_contract", now, raw_body),
        }


class TestBuiltinGenericHmacContract(ConnectorContractTest):
    connector_class = GenericHmacConnector
    empty_config_is_valid = True  # every field has a default (X-Signature, sha256, hex)

    def get_config(self):
        return {"prefix": "sha256=", "timestamp_header": "X-Timestamp"}

    def sign_webhook(self, raw_body, secret):
        now = int(time.time())
        return {
            "X-Timestamp": str(now),
            "X-Signature": generic_signature(secret, raw_body, prefix="sha256=", timestamp=now),
        }
