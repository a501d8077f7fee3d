from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("projects/<int:project_id>/chat/", views.home, name="home"),
    path("projects/<int:project_id>/chat/new/", views.start, name="start"),
    path(
        "projects/<int:project_id>/chat/<int:conversation_id>/",
        views.conversation,
        name="conversation",
    ),
    path("projects/<int:project_id>/chat/<int:conversation_id>/send/", views.send, name="send"),
    path("projects/<int:project_id>/chat/<int:conversation_id>/judge/", views.judge, name="judge"),
    path("projects/<int:project_id>/chat/<int:conversation_id>/retry/", views.retry, name="retry"),
    path(
        "projects/<int:project_id>/chat/<int:conversation_id>/branch/",
        views.branch,
        name="branch",
    ),
    path("projects/<int:project_id>/chat/<int:conversation_id>/end/", views.end, name="end"),
    path("projects/<int:project_id>/chat/turns/<int:turn_id>/events/", views.events, name="events"),
    path("projects/<int:project_id>/chat/turns/<int:turn_id>/stop/", views.stop, name="stop"),
    path(
        "projects/<int:project_id>/chat/conversations/",
        views.conversations,
        name="conversations",
    ),
    path("projects/<int:project_id>/chat/settings/", views.chat_settings, name="settings"),
    path("projects/<int:project_id>/chat/trees.jsonl", views.tree_export, name="tree_export"),
]
