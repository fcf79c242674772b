"""The ingest baseline: what a hand-written endpoint does at the least, with no framework
of ours: the same HMAC-SHA256 check as the GitHub connector, then one INSERT."""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

TABLE = "bench_bare_webhook"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, delivery text UNIQUE, "
    "event_type text, payload jsonb, received_at timestamptz DEFAULT now())"
)


@csrf_exempt
@require_POST
def bare_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.AUTOMATE["SECRETS"]["github-webhook"].encode()
    body = request.body
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        return JsonResponse({"error": "bad signature"}, status=401)
    payload = json.loads(body)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (delivery, event_type, payload) VALUES (%s, %s, %s) RETURNING id",
            [
                request.headers.get("X-GitHub-Delivery"),
                request.headers.get("X-GitHub-Event"),
                json.dumps(payload),
            ],
        )
        row_id = cursor.fetchone()[0]
    return JsonResponse({"id": row_id}, status=202)
