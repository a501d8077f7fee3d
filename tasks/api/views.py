import django_filters
from rest_framework import mixins

from tasks.api.base import OrganizationViewSet
from tasks.api.serializers import ProjectSerializer
from tasks.models import Membership, Project


class ProjectFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Project.Status.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["status", "name"]


class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Projects of the caller's organization (annotators: the ones open for work)."""

    queryset = Project.objects.none()
    serializer_class = ProjectSerializer
    filterset_class = ProjectFilter
    ordering_fields = ["name", "created_at", "updated_at"]

    def get_organization_queryset(self):
        membership: Membership | None = self.caller_membership
        if self.request.auth is not None:  # a token reads as its organization's lead would
            return Project.objects.all()
        return Project.objects.for_member(membership)
