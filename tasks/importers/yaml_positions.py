"""YAML loading that remembers where each key is, so errors can name the line.

PyYAML silently keeps the last of two equal keys; here a repeated key is an error (a config
pasted without its indentation collapses into exactly that).

A config comes from whoever uploads it, so loading is bounded: aliases are expanded into
at most MAX_VALUES values (a "billion laughs" config is ten lines that expand into 10⁹
strings), nesting deep enough to exhaust Python's stack is an error, and only plain JSON
values come out (a date or ``!!binary`` is kept as the text that was written).
"""

import math
from dataclasses import dataclass

import yaml

# The seed's config has about 150 values; a thousand times that is still a config.
MAX_VALUES = 100_000
PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class YamlProblem(Exception):
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def load_with_lines(text: str) -> tuple[object, dict[str, int]]:
    """Parse YAML; return the data and {key path: line}, paths like
    ``annotation_schemes[0].labels``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # A config pasted without its indentation breaks the block structure.
        hint = " (is the indentation intact?)" if "block" in (exc.problem or "") else ""
        line = mark.line + 1 if mark else None
        raise YamlProblem(line, f"not valid YAML: {exc.problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlProblem(None, "not valid YAML: nested too deeply") from None
    lines: dict[str, int] = {}
    constructor = yaml.SafeLoader("")
    expanded = 0

    def scalar(node):
        try:
            value = constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # A tag PyYAML's safe loader refuses (!!python/object), an impossible date …
            problem = getattr(exc, "problem", None) or str(exc)
            raise YamlProblem(node.start_mark.line + 1, f"not valid YAML: {problem}") from None
        if value is None or isinstance(value, (str, int, bool)):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        return str(node.value)  # .nan, a timestamp, !!binary: the text as written

    def build(node, path: str):
        nonlocal expanded
        expanded += 1
        if expanded > MAX_VALUES:
            raise YamlProblem(
                node.start_mark.line + 1,
                f"the config expands to more than {MAX_VALUES:,} values "
                "(are YAML aliases (*name) repeating each other?)",
            )
        lines.setdefault(path or "$", node.start_mark.line + 1)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in PLAIN_TAGS:
            # The safe loader would refuse !!python/… on a list or mapping only if asked to
            # build it; a config has no use for any such tag (!!set, !!omap …) either.
            raise YamlProblem(
                node.start_mark.line + 1, f"not valid YAML: the tag {node.tag} is not allowed"
            )
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlProblem(key_node.start_mark.line + 1, "keys must be plain values")
                key = scalar(key_node)
                if not isinstance(key, (str, int, float, bool)):
                    raise YamlProblem(key_node.start_mark.line + 1, "keys must be plain values")
                key = str(key)
                child = f"{path}.{key}" if path else key
                if key in result:
                    raise YamlProblem(
                        key_node.start_mark.line + 1,
                        f"key '{child}' appears twice (first at line {lines[child]}); "
                        "is the indentation intact?",
                    )
                lines[child] = key_node.start_mark.line + 1
                result[key] = build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return scalar(node)

    if node is None:
        return None, lines
    try:
        return build(node, ""), lines
    except RecursionError:
        raise YamlProblem(None, "not valid YAML: nested too deeply") from None
