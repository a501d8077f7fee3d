"""YAML loading that remembers where each key is, so errors can name the line.

PyYAML silently keeps the last of two equal keys; here a repeated key is an error (a config
pasted without its indentation collapses into exactly that).
"""

from dataclasses import dataclass

import yaml


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
    lines: dict[str, int] = {}
    constructor = yaml.SafeLoader("")

    def build(node, path: str):
        lines.setdefault(path or "$", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
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
        return constructor.construct_object(node, deep=True)

    if node is None:
        return None, lines
    return build(node, ""), lines
