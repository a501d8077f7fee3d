from django.urls import path

from exports import views

app_name = "exports"
urlpatterns = [
    path("projects/<int:project_id>/exports/", views.exports_page, name="page"),
    path(
        "projects/<int:project_id>/exports/<int:export_id>/<str:name>",
        views.download,
        name="download",
    ),
]
