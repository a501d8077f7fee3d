from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat & Choose"

    def ready(self):
        # Waits for app loading: the model and the audit receivers need the registry.
        from chat.models import ChatTurn
        from tasks.audit import connect_job

        connect_job(ChatTurn, "chat_turn")
