from rest_framework import serializers

from tasks.models import Project


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "guidelines", "status", "created_at", "updated_at"]
        read_only_fields = fields
