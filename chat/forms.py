"""The chat forms: starting a conversation (an expert) and the guardrails (a lead)."""

from django import forms

from chat import services
from chat.models import ChatSettings
from tasks.generation import recipes_for
from tasks.models import LLMEndpoint, Project, Prompt


class StartForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=LLMEndpoint.objects.none(), label="Model")
    recipe = forms.ChoiceField(label="Recipe")
    seed = forms.ModelChoiceField(
        queryset=Prompt.objects.none(), required=False, label="Start from a seed (optional)"
    )

    def __init__(self, *args, chat: ChatSettings, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = services.allowed_endpoints(chat)
        self.fields["endpoint"].empty_label = None  # the first allowed model is the default
        self.fields["recipe"].choices = [(n, n) for n in services.allowed_recipes(chat)]
        # Seeds are the prompts the lead imported (not the turns of earlier chats).
        self.fields["seed"].queryset = Prompt.objects.filter(project=chat.project).exclude(
            source="chat"
        )


class SettingsForm(forms.ModelForm):
    endpoints = forms.ModelMultipleChoiceField(
        queryset=LLMEndpoint.objects.none(), widget=forms.CheckboxSelectMultiple
    )
    recipes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ChatSettings
        fields = [
            "endpoints",
            "recipes",
            "system_prompt",
            "replies_per_turn",
            "max_turns",
            "concurrent_replies",
        ]

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoints"].queryset = LLMEndpoint.for_organization(project.organization)
        self.fields["recipes"].choices = [(n, n) for n in recipes_for(project.organization)]
        if self.instance.pk:
            self.initial["recipes"] = self.instance.recipes

    def _post_clean(self):
        # The service checks the model and makes the project a chat project.
        pass
