"""Page numbers as the schema states them. Its own module, as DRF imports the pagination
class from settings while drf-spectacular is still loading (``common`` would close a circle)."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

MAX_PAGE = 100_000
PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,5}")


class PageNumbers(PageNumberPagination):
    """DRF's page numbers, checked as the schema states them: a whole number from 1, so an
    empty or other ``page`` is a 400 naming it (DRF took an empty one for page 1)."""

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not (PAGE_NUMBER.fullmatch(raw) and int(raw) <= MAX_PAGE):
            raise ValidationError({"page": [f"A whole number from 1 to {MAX_PAGE}."]})
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        found = super().get_schema_operation_parameters(view)
        for parameter in found:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
        return found
