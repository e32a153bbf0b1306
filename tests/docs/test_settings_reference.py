"""The configuration reference cannot drift from the settings class: README.md's table and both
`.env` examples name every setting, with its default, and nothing else. A failure says which
names are missing where, so a new setting takes a minute to document."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from plaid_bridge.config import ConfigError, Settings, load_settings
from tests.docs.settings_reference import (
    ENV_EXAMPLES,
    ROOT,
    configuration_table,
    env_assignments,
    render_default,
    setting_names,
)

TABLE = "README.md (section Configuration, a row `| `NAME` | `default` | what it does |`)"


def _listed(names: list[str] | set[str]) -> str:
    return ", ".join(sorted(names))


def test_the_readme_table_names_every_setting_once() -> None:
    documented = Counter(row.name for row in configuration_table())
    settings = set(setting_names())

    problems = []
    if missing := settings - documented.keys():
        problems.append(f"{TABLE} lacks: {_listed(missing)}")
    if unknown := documented.keys() - settings:
        problems.append(f"{TABLE} lists settings that do not exist: {_listed(unknown)}")
    if twice := {name for name, count in documented.items() if count > 1}:
        problems.append(f"{TABLE} lists more than once: {_listed(twice)}")
    assert not problems, "\n".join(problems)


def test_the_readme_table_gives_each_default_and_what_it_does() -> None:
    wrong = [
        f"{row.name}: README says `{row.default}`, Settings has `{render_default(row.name)}`"
        for row in configuration_table()
        if row.name in setting_names() and row.default != render_default(row.name)
    ]
    assert not wrong, "README.md's defaults differ from config.Settings:\n" + "\n".join(wrong)
    assert not [row.name for row in configuration_table() if len(row.does) < 10]


@pytest.mark.parametrize("example", ENV_EXAMPLES, ids=lambda path: path.name)
def test_each_env_example_lists_every_setting_once_with_a_line_on_it(example: Path) -> None:
    assignments = env_assignments(example)
    listed = Counter(assignment.name for assignment in assignments)
    settings = set(setting_names())

    problems = []
    if missing := settings - listed.keys():
        problems.append(
            f"{example.name} lacks (add `# what it does` then `# NAME=default`): {_listed(missing)}"
        )
    if unknown := listed.keys() - settings:
        problems.append(f"{example.name} sets variables that are not settings: {_listed(unknown)}")
    if twice := {name for name, count in listed.items() if count > 1}:
        problems.append(f"{example.name} lists more than once: {_listed(twice)}")
    if undescribed := {a.name for a in assignments if not a.described}:
        problems.append(f"{example.name} has no comment line just above: {_listed(undescribed)}")
    if redundant := {
        a.name
        for a in assignments
        if a.active and a.name in settings and a.value and a.value == render_default(a.name)
    }:
        problems.append(
            f"{example.name} sets these to their defaults (comment them out): {_listed(redundant)}"
        )
    assert not problems, "\n".join(problems)


def _without_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)


def test_the_development_example_starts_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_settings_in_environment(monkeypatch)
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings.plaid_env == "emulator"
    assert settings.model_fields_set == set()  # everything commented out: defaults serve


def test_the_production_example_needs_only_its_blanks_filled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_settings_in_environment(monkeypatch)
    example = ROOT / ".env.production.example"
    blanks = {a.name for a in env_assignments(example) if a.active and not a.value}

    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=example)
    unexplained = [
        problem
        for problem in refused.value.problems
        if not any(problem.startswith(name) for name in blanks)
    ]
    assert not unexplained, refused.value.problems

    filled = {
        "plaid_client_id": "client-id",
        "plaid_secret": "production-secret",
        "plaid_encryption_keys": "k1:" + "A" * 43 + "=",
        "auth_jwt_secret": "s" * 32,
    }
    settings = load_settings(_env_file=example, **filled)
    assert (settings.plaid_env, settings.worker_mode) == ("production", "external")
