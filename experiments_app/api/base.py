"""What every API viewset shares: JSON only, pagination, and the experiment a 409 reports on."""

from rest_framework import viewsets

from experiments_app.api.parsers import StrictJSONParser


class ApiViewSet(viewsets.GenericViewSet):
    parser_classes = [StrictJSONParser]
    # OPTIONS would describe one serializer per view, which says less than /api/schema/.
    metadata_class = None
    # Set by views that act on one experiment, so a 409 can report its current status.
    experiment = None

    def paginated(self, queryset, serializer_class, **context):
        page = self.paginate_queryset(queryset)
        data = serializer_class(page, many=True, context={"request": self.request, **context}).data
        return self.get_paginated_response(data)


def validated(serializer_class, data, **kwargs):
    """The shape-checked data (400 naming each field otherwise)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query(request, serializer_class):
    """Query parameters checked against an allow-list serializer (400 for unknown values)."""
    return validated(serializer_class, request.query_params)
