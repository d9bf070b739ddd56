"""Turning the command line's parameter options into one mapping, as papermill's CLI does."""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidInput
from .params import NotebookInfo, check_value, from_cli_text, read_regular_file


def gather_parameters(info: NotebookInfo, pairs: tuple[tuple[str, str], ...], yaml_text: str | None,
                      yaml_file: str | None, params_json: str | None) -> dict[str, Any]:
    """-f file, then -y YAML, then --params-json, then -p pairs (later ones win)."""
    parameters: dict[str, Any] = {}
    if yaml_file is not None:
        label = f"bad -f {yaml_file}"
        try:
            text = read_regular_file(yaml_file, label, missing="cannot read: no such file").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{label}: cannot read: {exc}") from None
        parameters.update(_yaml_mapping(text, f"-f {yaml_file}"))
    if yaml_text is not None:
        parameters.update(_yaml_mapping(yaml_text, "-y"))
    if params_json is not None:
        try:
            value = json.loads(params_json)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"bad --params-json: not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(value, dict):
            raise InvalidInput("bad --params-json: expected a JSON object")
        parameters.update(value)
    for name, text in pairs:
        parameters[name] = from_cli_text(text, info.parameters.get(name))
    return parameters


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    import yaml

    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        first = (str(exc).splitlines() or ["error"])[0]
        raise InvalidInput(f"bad {where}: not valid YAML ({first})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"bad {where}: expected a mapping of names to values")
    return value


def parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise InvalidInput(f"bad --tag {tag!r}: expected KEY=VALUE")
        result[key] = value
    return result


def parse_grid(info: NotebookInfo, grid: tuple[str, ...]) -> dict[str, list[Any]]:
    """`--grid NAME=V1,V2,...` options as name -> values, each value typed as `-p` types it."""
    result: dict[str, list[Any]] = {}
    for option in grid:
        name, sep, text = option.partition("=")
        values = text.split(",")
        if not sep or not name or not all(values):
            raise InvalidInput(f"bad --grid {option[:60]!r}: expected NAME=V1,V2,...")
        if name in result:
            raise InvalidInput(f"bad --grid {option[:60]!r}: {name} is already in another --grid")
        param = info.parameters.get(name)
        typed = [from_cli_text(value, param) for value in values]
        if param is not None:  # unknown names are refused by the submission, naming the declared ones
            typed = [check_value(param, value) for value in typed]
        result[name] = typed
    return result
