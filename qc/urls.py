from django.urls import path, re_path

from qc import views

app_name = "qc"
urlpatterns = [
    path("projects/<int:project_id>/qc/", views.dashboard, name="dashboard"),
    path("projects/<int:project_id>/qc/recompute/", views.recompute, name="recompute"),
    re_path(
        r"^projects/(?P<project_id>\d+)/qc/report\.(?P<fmt>json|csv)$",
        views.download,
        name="download",
    ),
]
