"""JSON answers through orjson: several times faster than the standard library on /search's large
answers, and it embeds pre-serialized JSON (orjson.Fragment) without parsing it again."""

import orjson
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer


class ORJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_fallback, option=orjson.OPT_NON_STR_KEYS)


def _fallback(value):
    # Lazy translation strings and other str-likes in DRF's error details.
    return str(value)


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Every answer is JSON whatever the client's Accept header says (never a 406): no Accept parsing
    on every request. Request bodies are still matched to parsers as DRF does."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
