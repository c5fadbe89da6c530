"""Request bodies of the API's writes (/capture reads its own: events.capture)."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError, UnsupportedMediaType

from events.quoting import quoted


def refuse_compressed(encoding: str | None) -> None:
    """Bodies are read uncompressed: a compressed one would fail as bad UTF-8, which says nothing useful."""
    if encoding and encoding.strip().lower() != "identity":
        raise UnsupportedMediaType(
            encoding, detail=f"Content-Encoding {quoted(encoding)} is not supported: send the body uncompressed."
        )


class JSONParser(parsers.JSONParser):
    """DRF's parser, with a body nested deeper than Python's recursion limit answered as a 400 rather than
    a RecursionError's 500, and a compressed body as a 415, as /capture answers them."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        refuse_compressed(request.META.get("HTTP_CONTENT_ENCODING") if request is not None else None)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
