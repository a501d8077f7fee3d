from django.urls import path

from tasks import views

app_name = "tasks"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("organization/switch/", views.switch_organization, name="switch_organization"),
]
