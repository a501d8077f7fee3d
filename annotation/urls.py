from django.urls import path

from annotation import preview, review, views

app_name = "annotation"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/preview/", preview.question_preview, name="question_preview"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path(
        "projects/<int:project_id>/annotate/<int:assignment_id>/submit/",
        views.submit,
        name="submit",
    ),
    path("projects/<int:project_id>/annotate/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("projects/<int:project_id>/annotate/undo/", views.undo, name="undo"),
    path("projects/<int:project_id>/history/", views.history, name="history"),
    path("projects/<int:project_id>/history/<int:judgment_id>/", views.edit, name="edit"),
    path("projects/<int:project_id>/review/", review.queue, name="review"),
    path(
        "projects/<int:project_id>/review/<int:item_id>/",
        review.item_review,
        name="review_item",
    ),
    path(
        "projects/<int:project_id>/discussion/<int:item_id>/",
        review.discussion,
        name="discussion",
    ),
    path("projects/<int:project_id>/judge/", views.judge_page, name="judge"),
    path("projects/<int:project_id>/judge/run/", views.judge_run, name="judge_run"),
]
