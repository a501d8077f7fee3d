from django.urls import path

from tasks import views

app_name = "tasks"

urlpatterns = [
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("organization/switch/", views.switch_organization, name="switch_organization"),
    path("invitations/", views.invitations, name="invitations"),
    path("organization/security/", views.organization_security, name="organization_security"),
    path("audit/", views.audit_trail, name="audit"),
    path("audit/verify", views.audit_verify, name="audit_verify"),
    path("audit/export.csv", views.audit_export, {"fmt": "csv"}, name="audit_csv"),
    path("audit/export.jsonl", views.audit_export, {"fmt": "jsonl"}, name="audit_jsonl"),
]
