"""Potato config.yaml → project, as a lead brings the config they already have."""

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django_scopes import scope, scopes_disabled

from tasks.importers.potato import PotatoImportFailed, import_potato_project, parse_config
from tasks.models import Candidate, Item, Project, Prompt

SEED_DIR = Path(settings.BASE_DIR) / "project" / "demo" / "data" / "dpo-preference"
SEED_CONFIG = SEED_DIR / "config.yaml"
# The Potato seed document as it was pasted (its config lost its indentation), copied from
# the project's sources (seeds/001_8fda780abb8d694a.txt) so that the suite stands alone.
PASTED_SEED = Path(__file__).resolve().parents[1] / "seeds" / "potato_dpo_preference.txt"


def import_dir(organization, folder: Path, config="config.yaml", **options):
    with scope(organization=organization):
        return import_potato_project(
            organization=organization,
            config_text=(folder / config).read_text(),
            config_name=config,
            base_dir=folder,
            **options,
        )


def test_the_seed_config_is_the_seeds_text_with_its_indentation_restored():
    seed = PASTED_SEED.read_text().split("Configuration Fileconfig.yaml\n", 1)[1]
    seed = seed.split("Sample Datasample-data.json", 1)[0]
    ours = SEED_CONFIG.read_text()
    assert [line.strip() for line in seed.splitlines() if line.strip()] == [
        line.strip() for line in ours.splitlines() if line.strip()
    ]


@pytest.mark.django_db
def test_seed_config_round_trip(acme):
    project, created, report, warnings = import_dir(acme.organization, SEED_DIR)
    assert created and project.name == "DPO Preference Data Collection"
    assert project.mode == "pairwise"
    preference, dimension, reasoning = project.questions
    assert [(lb["text"], lb["key"], lb["means"], lb["tooltip"]) for lb in preference["labels"]] == [
        ("Response A Preferred", "a", "A", "Response A is clearly better overall"),
        ("Response B Preferred", "b", "B", "Response B is clearly better overall"),
        ("Equally Good", "e", "tie", "Both responses are of comparable quality"),
        ("Both Bad", "x", "both_bad", "Neither response adequately addresses the prompt"),
    ]
    assert preference["description"].startswith("Which response do you prefer?")
    assert dimension["kind"] == "choice" and dimension["name"] == "alignment_dimension"
    assert [(o["value"], o["key"]) for o in dimension["options"]] == [
        ("Helpful", "1"),
        ("Harmless", "2"),
        ("Honest", "3"),
    ]
    assert (
        dimension["options"][1]["tooltip"]
        == "The key differentiator is safety and avoidance of harm"
    )
    assert reasoning["kind"] == "text" and reasoning["multiline"] and not reasoning["required"]
    assert reasoning["placeholder"] == "What factors influenced your preference?"
    assert project.guidelines.startswith("You will evaluate pairs of AI model responses")
    assert "Key Principles:" in project.guidelines
    assert "{{response_a}}" in project.html_layout and "{{text}}" in project.html_layout
    assert project.candidate_fields == ["response_a", "response_b"]
    assert (
        project.annotator_access,
        project.quota_per_annotator,
        project.annotations_per_item,
        project.allow_skip,
        project.skip_reason_required,
    ) == ("all", 100, 2, True, False)
    assert (report.prompts_created, report.candidates_created, report.items_created) == (10, 20, 10)
    assert {w.split("key '")[1].split("'")[0] for w in warnings} == {
        "output_annotation_dir",
        "output_annotation_format",
        "port",
        "server_name",
    }
    with scopes_disabled():
        first = Prompt.objects.get(project=project, external_id="dpo_001")
        assert first.text == "Explain how photosynthesis works in simple terms."
        assert list(first.candidates.values_list("source_key", flat=True)) == [
            "response_a",
            "response_b",
        ]
        assert Item.objects.filter(project=project, target_annotations=2).count() == 10


@pytest.mark.django_db
def test_reimporting_the_seed_duplicates_nothing(acme):
    import_dir(acme.organization, SEED_DIR)
    project, created, report, _ = import_dir(acme.organization, SEED_DIR)
    assert not created and report.prompts_already_present == 10
    with scopes_disabled():
        assert (
            Project.objects.filter(organization=acme.organization, name=project.name).count() == 1
        )
        assert (
            Prompt.objects.filter(project=project).count(),
            Candidate.objects.filter(prompt__project=project).count(),
            Item.objects.filter(project=project).count(),
        ) == (10, 20, 10)


def test_the_seed_pasted_without_indentation_is_refused_with_the_line():
    flat = PASTED_SEED.read_text().split("Configuration Fileconfig.yaml\n", 1)[1]
    flat = flat.split("Sample Datasample-data.json", 1)[0]
    with pytest.raises(PotatoImportFailed) as info:
        parse_config(flat)
    assert str(info.value.problems[0]) == (
        "config.yaml, line 60: not valid YAML: expected <block end>, but found '-' "
        "(is the indentation intact?)"
    )


POTATO2 = """
annotation_task_name: Potato 2 style
data_files: [data.jsonl]
item_properties: {id_key: uid, text_key: prompt}
user_config:
  allow_all_users: false
  users: [ann@example.com]
max_annotations_per_item: 3
max_annotations_per_user: 50
annotation_schemes:
  - annotation_type: bws
    name: best_worst
    description: Pick the best and the worst response.
  - annotation_type: multiselect
    name: issues
    labels:
      - {name: Verbose, tooltip: Too long, key_value: v}
      - {name: Wrong, tooltip: Factually wrong, key_value: w}
  - annotation_type: multirate
    name: quality
    options: [Clarity, Accuracy]
    labels: [Poor, Fair, Good]
  - annotation_type: likert
    name: overall
    size: 5
    min_label: bad
    max_label: great
    label_requirement: {required: true}
"""


@pytest.mark.django_db
def test_potato_2_dialect(acme, tmp_path):
    (tmp_path / "config.yaml").write_text(POTATO2)
    (tmp_path / "data.jsonl").write_text(
        '{"uid": "u1", "prompt": "Hi?", "response_a": "a", "response_b": "b", "response_c": "c"}\n'
    )
    project, _, report, warnings = import_dir(acme.organization, tmp_path)
    assert project.mode == "best_worst" and project.id_key == "uid" and project.text_key == "prompt"
    assert (
        project.annotator_access,
        project.annotations_per_item,
        project.quota_per_annotator,
    ) == ("chosen", 3, 50)
    kinds = [(q["name"], q["kind"]) for q in project.questions]
    assert kinds == [
        ("best_worst", "preference"),
        ("issues", "multichoice"),
        ("quality_clarity", "rating"),
        ("quality_accuracy", "rating"),
        ("overall", "rating"),
    ]
    issues = project.questions[1]
    assert [(o["value"], o["key"], o["tooltip"]) for o in issues["options"]] == [
        ("Verbose", "v", "Too long"),
        ("Wrong", "w", "Factually wrong"),
    ]
    assert project.questions[2]["scale"] == {
        "min": 1,
        "max": 3,
        "labels": {"1": "Poor", "2": "Fair", "3": "Good"},
    }
    assert project.questions[4]["scale"] == {
        "min": 1,
        "max": 5,
        "labels": {"1": "bad", "5": "great"},
    }
    assert project.questions[4]["required"]
    assert report.items_created == 1  # one best/worst item of three candidates
    assert any("user_config.users" in w for w in warnings)


@pytest.mark.django_db
def test_ranking_scheme_makes_a_ranking_project(acme, tmp_path):
    (tmp_path / "config.yaml").write_text(
        "annotation_task_name: R\nannotation_schemes:\n  - {annotation_type: ranking, name: rank}\n"
    )
    project, *_ = import_dir(acme.organization, tmp_path)
    assert project.mode == "ranking"


def problems_of(text: str) -> list[str]:
    with pytest.raises(PotatoImportFailed) as info:
        parse_config(text)
    return [str(p) for p in info.value.problems]


def test_unsupported_annotation_type_is_named_with_its_line():
    problems = problems_of(
        "annotation_task_name: X\nannotation_schemes:\n"
        "  - annotation_type: pairwise\n    name: p\n"
        "  - annotation_type: span\n    name: entities\n"
    )
    assert problems == [
        "config.yaml, line 5, key 'annotation_schemes[1].annotation_type': "
        "unsupported annotation type 'span' (Chosen imports bws, likert, multirate, "
        "multiselect, number, pairwise, radio, ranking, text)"
    ]


def test_unsupported_option_is_named():
    problems = problems_of(
        "annotation_task_name: X\nannotation_schemes:\n"
        "  - annotation_type: radio\n    name: r\n    labels: [a, b]\n"
        "    has_free_response: true\n"
    )
    assert problems[0] == (
        "config.yaml, line 6, key 'annotation_schemes[0].has_free_response': "
        "unsupported option for radio"
    )


def test_unknown_top_level_key_is_an_error_and_server_keys_are_warnings():
    problems = problems_of(
        "annotation_task_name: X\nport: 9000\nmagic: 1\n"
        "annotation_schemes: [{annotation_type: pairwise, name: p}]\n"
    )
    assert problems == ["config.yaml, line 3, key 'magic': unsupported option"]
    config = parse_config(
        "annotation_task_name: X\nport: 9000\n"
        "annotation_schemes: [{annotation_type: pairwise, name: p}]\n"
    )
    assert config.warnings == [
        "config.yaml, line 2, key 'port': describes Potato's own server "
        "or files; not used by Chosen"
    ]


def test_malformed_yaml_names_the_line():
    assert problems_of("annotation_task_name: X\nannotation_schemes:\n  - [unclosed\n") == [
        "config.yaml, line 4: not valid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_shortcut_for_a_label_that_does_not_exist():
    problems = problems_of(
        "annotation_task_name: X\nannotation_schemes:\n"
        "  - annotation_type: pairwise\n    name: p\n    labels: [A wins, B wins]\n"
        "    keyboard_shortcuts: {C wins: c}\n"
    )
    assert problems == [
        "config.yaml, line 6, key 'annotation_schemes[0].keyboard_shortcuts': "
        "names no label: 'C wins'"
    ]


@pytest.mark.django_db
def test_missing_data_file_is_named_and_nothing_is_created(acme, tmp_path):
    shutil.copy(SEED_CONFIG, tmp_path / "config.yaml")
    with pytest.raises(PotatoImportFailed) as info:
        import_dir(acme.organization, tmp_path)
    assert str(info.value.problems[0]) == (
        f"{tmp_path / 'sample-data.json'}, file: data file not found (named in data_files[0])"
    )
    with scopes_disabled():
        assert not Project.objects.filter(name="DPO Preference Data Collection").exists()


@pytest.mark.django_db
def test_bad_data_row_rolls_back_the_new_project(acme, tmp_path):
    shutil.copy(SEED_CONFIG, tmp_path / "config.yaml")
    (tmp_path / "sample-data.json").write_text(
        '[{"id": "x", "response_a": "a", "response_b": "b"}]'
    )
    with pytest.raises(PotatoImportFailed) as info:
        import_dir(acme.organization, tmp_path)
    assert (
        str(info.value.problems[0])
        == "sample-data.json, item 1 (line 1) (id 'x'), key 'text': missing"
    )
    with scopes_disabled():
        assert not Project.objects.filter(name="DPO Preference Data Collection").exists()


# --- the commands ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_project_command(acme, capsys):
    call_command("import_project", str(SEED_CONFIG), organization=acme.organization.slug)
    out, err = capsys.readouterr()
    assert "Created project 'DPO Preference Data Collection'" in out and "10 prompts" in out
    assert "warning: " in err and "'port'" in err


@pytest.mark.django_db
def test_import_project_command_refuses_files_over_the_byte_limit(acme, capsys, settings):
    settings.CHOSEN_IMPORT_MAX_BYTES = 1000  # the seed's config and data are larger
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_project", str(SEED_CONFIG), organization=acme.organization.slug)
    assert (
        "key 'data_files': The files of one import may total at most 0.001 MB "
        "(CHOSEN_IMPORT_MAX_BYTES)" in capsys.readouterr().err
    )
    with scopes_disabled():
        assert not Project.objects.filter(name="DPO Preference Data Collection").exists()


@pytest.mark.django_db
def test_import_project_command_refuses_rows_over_the_row_limit(acme, capsys, settings):
    settings.CHOSEN_IMPORT_MAX_ROWS = 9  # the seed's data has 10
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_project", str(SEED_CONFIG), organization=acme.organization.slug)
    assert "the import holds more than 9 data rows" in capsys.readouterr().err
    with scopes_disabled():
        assert not Project.objects.filter(name="DPO Preference Data Collection").exists()
        assert not Prompt.objects.exists()


def test_a_config_bigger_than_a_config_can_be_is_refused_unread():
    text = "annotation_task_name: Big\nannotation_instructions: " + "x" * 2**21 + "\n"
    with pytest.raises(PotatoImportFailed) as info:
        parse_config(text)
    assert str(info.value) == (
        "config.yaml: the config is 2 MB; a Potato config may be at most 1 MB "
        "(was a data file uploaded as the config?)"
    )


@pytest.mark.django_db
def test_import_prompts_command_exits_1_naming_the_problem(acme, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p1", "text": "Hi", "response_a": ""}\n')
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_prompts", f"{acme.organization.slug}/{acme.project.name}", str(bad))
    assert f"{bad}, line 1 (id 'p1'), key 'response_a': is empty" in capsys.readouterr().err


@pytest.mark.django_db
def test_import_prompts_command_exit_status_is_1():
    import os
    import subprocess
    import sys

    from django.db import connection

    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@localhost:5432/{connection.settings_dict['NAME']}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "import_prompts", "nope/x", "f.jsonl"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1 and "no organization 'nope'" in result.stderr


# Potato 2.x's own example (examples/classification/pairwise-comparison): the two texts
# are a list in the row's text field, a tie label is added, keys default to 1 / 2 / 0.
POTATO2_PAIRWISE = """
annotation_task_name: Pairwise example
task_dir: .
output_annotation_dir: out/
data_files: [data.json]
item_properties: {id_key: id, text_key: text, context_key: question}
annotation_schemes:
  - annotation_type: pairwise
    name: preference
    description: Which is better?
    mode: binary
    items_key: text
    labels: ["Option A", "Option B"]
    allow_tie: true
    tie_label: "Hard to tell"
  - annotation_type: text
    name: reasoning
    description: Why?
    textarea: {on: true, rows: 4, cols: 40}
    min_chars: 10
    label_requirement: true
"""


@pytest.mark.django_db
def test_potato_2_pairwise_example_with_listed_texts_and_a_tie(acme, tmp_path):
    (tmp_path / "config.yaml").write_text(POTATO2_PAIRWISE)
    (tmp_path / "data.json").write_text(
        '[{"id": "1", "question": "Which reply is kinder?", "text": ["Thanks!", "Whatever."]}]'
    )
    project, _, report, warnings = import_dir(acme.organization, tmp_path)
    preference, reasoning = project.questions
    assert [(lb["text"], lb["means"], lb["key"]) for lb in preference["labels"]] == [
        ("Option A", "A", "1"),
        ("Option B", "B", "2"),
        ("Hard to tell", "tie", "0"),
    ]
    assert (reasoning["min_length"], reasoning["required"], reasoning["multiline"]) == (
        10,
        True,
        True,
    )
    assert project.text_key == "question" and project.candidate_fields == ["text"]
    assert (report.prompts_created, report.candidates_created, report.items_created) == (1, 2, 1)
    with scopes_disabled():
        prompt = Prompt.objects.get(project=project)
        assert prompt.text == "Which reply is kinder?"
        assert list(prompt.candidates.values_list("text", flat=True)) == ["Thanks!", "Whatever."]
    assert any("'annotation_schemes[1].textarea'" in w for w in warnings) is False


def test_listed_texts_without_a_prompt_field_are_refused():
    problems = problems_of(POTATO2_PAIRWISE.replace(", context_key: question", ""))
    assert problems == [
        "config.yaml, line 6, key 'item_properties.text_key': 'text' holds the "
        "texts to compare; name the prompt's field with item_properties.context_key"
    ]


def test_potato_options_without_an_equivalent_are_warnings():
    config = parse_config(
        "annotation_task_name: X\nbws_config: {tuple_size: 4}\nannotation_schemes:\n"
        "  - {annotation_type: bws, name: b, tuple_size: 4, best_description: 'Best?'}\n"
    )
    assert config.fields["mode"] == "best_worst"
    assert [w.split(", key ")[1] for w in config.warnings] == [
        "'bws_config': describes Potato's own server or files; not used by Chosen",
        "'annotation_schemes[0].tuple_size': no equivalent in Chosen; ignored",
    ]


def test_showcase_top_level_keys_and_potato_2_quota_spelling():
    config = parse_config(
        "task_name: Showcase\nid_key: uid\ntext_key: body\nper_annotator_quota: {default: 40}\n"
        "min_annotators_per_instance: 3\n"
        "annotation_schemes: [{annotation_type: pairwise, name: p}]\n"
    )
    fields = config.fields
    assert (fields["name"], fields["id_key"], fields["text_key"]) == ("Showcase", "uid", "body")
    assert (fields["quota_per_annotator"], fields["annotations_per_item"]) == (40, 3)
