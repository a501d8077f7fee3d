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
    path("projects/<int:project_id>/qc/leaderboard/", views.leaderboard, name="leaderboard"),
    path(
        "projects/<int:project_id>/qc/leaderboard/compute/",
        views.compute_leaderboard,
        name="compute_leaderboard",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/qc/leaderboard\.(?P<fmt>json|csv)$",
        views.download_leaderboard,
        name="download_leaderboard",
    ),
    path("leaderboard/", views.leaderboard, name="organization_leaderboard"),
    path(
        "leaderboard/compute/",
        views.compute_leaderboard,
        name="compute_organization_leaderboard",
    ),
    re_path(
        r"^leaderboard\.(?P<fmt>json|csv)$",
        views.download_leaderboard,
        name="download_organization_leaderboard",
    ),
]
