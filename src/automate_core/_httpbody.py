"""Response bodies for the SSRF-safe client, counted and decoded with a bound (private).

``max_size`` applies to the bytes as received AND after decompression, while they stream:
Content-Length is never trusted (it may lie, or describe the compressed size of a gzip
bomb), and at most ``MAX_ENCODING_LAYERS`` stacked encodings are decoded. Decompression
produces at most ``_CHUNK`` bytes per step, so a bomb is stopped after ``max_size`` bytes
of output instead of ballooning in memory. Only the encodings the client asks for (gzip,
deflate) are accepted.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from automate_core._netguard import SSRFError

_CHUNK = 64 * 1024
#: Stacked Content-Encoding layers accepted. Real services send one; each layer costs a
#: decompressor and a level of recursion, so thousands of them are refused up front.
MAX_ENCODING_LAYERS = 3
_DECODABLE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class ResponseTooLarge(SSRFError):
    """The response body is larger than ``max_size`` (compressed or decompressed)."""

    def __init__(self, max_size: int, url: str | None = None) -> None:
        super().__init__(
            f"the response body exceeds max_size ({max_size} bytes)", reason="too_large", url=url
        )


def _encodings(headers: httpx.Headers) -> list[str]:
    values = [
        token.strip().lower()
        for header in headers.get_list("content-encoding")
        for token in header.split(",")
    ]
    encodings = [value for value in values if value and value != "identity"]
    if len(encodings) > MAX_ENCODING_LAYERS:
        raise httpx.DecodingError(
            f"{len(encodings)} stacked Content-Encoding layers (at most {MAX_ENCODING_LAYERS})"
        )
    unknown = sorted({value for value in encodings if value not in _DECODABLE})
    if unknown:
        raise httpx.DecodingError(
            f"unsupported Content-Encoding {', '.join(unknown)} (the client asks for gzip, deflate)"
        )
    return encodings


def _through(data: bytes, decoders: list[Any]) -> Iterator[bytes]:
    """Decompress with at most ``_CHUNK`` bytes of output per step: a bomb cannot balloon."""
    if not decoders:
        if data:
            yield data
        return
    first, rest = decoders[0], decoders[1:]
    try:
        while True:
            out = first.decompress(data, _CHUNK)
            data = first.unconsumed_tail
            yield from _through(out, rest)
            if not data and len(out) < _CHUNK:
                return
    except zlib.error as exc:
        message = f"the response body is not valid compressed data: {exc}"
        raise httpx.DecodingError(message) from None


def _flush(decoders: list[Any]) -> Iterator[bytes]:
    for index, decoder in enumerate(decoders):
        yield from _through(decoder.flush(), decoders[index + 1 :])


class _Budget:
    """Counts raw and decoded bytes; either one past ``max_size`` raises ResponseTooLarge."""

    def __init__(self, response: httpx.Response, encodings: list[str], max_size: int) -> None:
        self.url = str(response.request.url)
        self.max_size = max_size
        self.raw = self.decoded = 0
        self.decoders = [zlib.decompressobj(_DECODABLE[e]) for e in reversed(encodings)]

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self.raw += len(chunk)
        if self.raw > self.max_size:
            raise ResponseTooLarge(self.max_size, self.url)
        yield from self._count(_through(chunk, self.decoders))

    def finish(self) -> Iterator[bytes]:
        yield from self._count(_flush(self.decoders))

    def _count(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.decoded += len(piece)
            if self.decoded > self.max_size:
                raise ResponseTooLarge(self.max_size, self.url)
            yield piece


class _CappedStream(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, encodings: list[str], max_size: int) -> None:
        self._response = response
        self._budget = _Budget(response, encodings, max_size)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._response.iter_raw():
            yield from self._budget.feed(chunk)
        yield from self._budget.finish()

    def close(self) -> None:
        self._response.close()


class _AsyncCappedStream(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, encodings: list[str], max_size: int) -> None:
        self._response = response
        self._budget = _Budget(response, encodings, max_size)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Decompression works on bytes already in memory, at most _CHUNK out per step.
        async for chunk in self._response.aiter_raw():
            for piece in self._budget.feed(chunk):
                yield piece
        for piece in self._budget.finish():
            yield piece

    async def aclose(self) -> None:
        await self._response.aclose()


def capped_response(response: httpx.Response, max_size: int, *, is_async: bool) -> httpx.Response:
    """The same response with a decoded, size-checked stream (and no Content-Encoding)."""
    url = str(response.request.url)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_size:
        raise ResponseTooLarge(max_size, url)
    encodings = _encodings(response.headers)
    headers = httpx.Headers(response.headers)
    if encodings:
        del headers["content-encoding"]
        headers.pop("content-length", None)
    stream_cls = _AsyncCappedStream if is_async else _CappedStream
    return httpx.Response(
        response.status_code,
        headers=headers,
        stream=stream_cls(response, encodings, max_size),
        request=response.request,
        extensions=response.extensions,
    )
