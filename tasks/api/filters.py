from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions
from rest_framework.settings import api_settings


class DeclaredFilterBackend(DjangoFilterBackend):
    """Filters only by the fields a view declares. An undeclared query parameter is a 400
    naming it and the accepted ones, not silently ignored, and never an ORM lookup."""

    ALWAYS_ALLOWED = {"page", "page_size", "format", api_settings.URL_FORMAT_OVERRIDE}

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        declared = set(filterset_class.base_filters) if filterset_class else set()
        ordering = getattr(view, "ordering_fields", None)
        allowed = declared | self.ALWAYS_ALLOWED | ({"ordering"} if ordering else set())
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise exceptions.ValidationError(
                {
                    param: [f"Unknown parameter. Accepted: {', '.join(sorted(allowed - {None}))}."]
                    for param in unknown
                }
            )
        if ordering and "ordering" in request.query_params:
            queryset = self._order(request, queryset, ordering)
        return super().filter_queryset(request, queryset, view)

    @staticmethod
    def _order(request, queryset, ordering_fields):
        requested = [f.strip() for f in request.query_params["ordering"].split(",") if f.strip()]
        invalid = [f for f in requested if f.removeprefix("-") not in ordering_fields]
        if not requested:
            invalid = ["(nothing)"]
        if invalid:
            raise exceptions.ValidationError(
                {
                    "ordering": [
                        f"Cannot order by {', '.join(invalid)}. "
                        f"Accepted: {', '.join(ordering_fields)}."
                    ]
                }
            )
        return queryset.order_by(*requested)
