"""response_body: the one reading of an answer's body for the http connector and step."""

from __future__ import annotations

import httpx

from automate_connectors.base import response_body


def _answer(content: bytes, content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.Response(200, content=content, headers=headers)


def test_response_body__json_content_is_parsed():
    answer = _answer(b'{"id": 7, "tags": ["a"]}', "application/json; charset=utf-8")

    assert response_body(answer) == {"json": {"id": 7, "tags": ["a"]}}


def test_response_body__a_json_null_is_kept_as_json():
    assert response_body(_answer(b"null", "application/problem+json")) == {"json": None}


def test_response_body__other_content_is_text():
    assert response_body(_answer(b"plain words", "text/plain")) == {"text": "plain words"}
    assert response_body(_answer(b'{"looks": "json"}', None)) == {"text": '{"looks": "json"}'}


def test_response_body__json_that_does_not_parse_is_kept_as_text():
    answer = _answer(b"<html>gateway error</html>", "application/json")

    assert response_body(answer) == {"text": "<html>gateway error</html>"}


def test_response_body__an_empty_json_answer_is_empty_text():
    assert response_body(_answer(b"", "application/json")) == {"text": ""}


def test_response_body__text_is_cut_at_max_text_and_says_so():
    answer = _answer(b"x" * 11, "text/plain")

    assert response_body(answer, max_text=10) == {"text": "x" * 10, "truncated": True}
    assert response_body(answer, max_text=11) == {"text": "x" * 11}
    assert response_body(answer) == {"text": "x" * 11}


def test_response_body__max_text_does_not_cut_json():
    answer = _answer(b'{"long": "' + b"y" * 50 + b'"}', "application/json")

    assert response_body(answer, max_text=5) == {"json": {"long": "y" * 50}}
