"""OpenAPI details drf-spectacular can't infer by itself."""

from django_filters import NumberFilter
from drf_spectacular.utils import OpenApiParameter

from events.filters import HASH_PATTERN, EventSearchFilterSet, HashFilter


def search_parameters() -> list[OpenApiParameter]:
    """/search's query parameters, read from its FilterSet so the schema can't drift from the code."""
    return [
        OpenApiParameter(
            name,
            int if isinstance(search_filter, NumberFilter) else str,
            description=search_filter.extra.get("help_text", ""),
            enum=[choice for choice, _ in search_filter.extra["choices"]] if "choices" in search_filter.extra else None,
            pattern=f"^{HASH_PATTERN}$" if isinstance(search_filter, HashFilter) else None,
        )
        for name, search_filter in EventSearchFilterSet.base_filters.items()
    ]


def without_trailing_slashes(result, generator, request, public):
    """Paths answer with and without the slash; document them the way the user's document writes them."""
    result["paths"] = {path.rstrip("/") or "/": item for path, item in result["paths"].items()}
    return result
