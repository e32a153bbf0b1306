"""The Prometheus alert rules: `promtool check rules` and `promtool test rules` pass, every metric
they name is one the service exports, and every runbook they link exists."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from plaid_bridge.ops.metrics import Metrics
from tests.conftest import REQUIRED
from tests.deploy.stack import DEPLOY

RULES = DEPLOY / "alerts.yml"
PRODUCTION = DEPLOY.parent / "production.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian's prometheus package; .ci/run installs it)"
        if REQUIRED:
            pytest.fail(f"REQUIRE_TEST_SERVICES=1 but {reason}")
        pytest.skip(reason)
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    checked = run("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_pass() -> None:
    tested = run("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_name_only_exported_metrics() -> None:
    exported = {"up"}
    for family in Metrics().registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        exported |= {family.name + suffix for suffix in suffixes}
    named = {
        name
        for rule in rules()
        for name in re.findall(
            r"\b(?:plaid_bridge_[a-z_]+|up)\b(?=\s*[{\[(]|\s*[=!<>]|\s*$)", str(rule["expr"])
        )
    }
    assert named, "no metric found in the rules"
    assert named <= exported, named - exported


def test_every_alert_has_its_runbook_and_is_unit_tested() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in PRODUCTION.read_text().splitlines()
        if line.startswith("#")
    }
    tests = yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    for rule in rules():
        name = str(rule["alert"])
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"docs/production.md#{name.lower()}"
        assert name.lower() in headings, f"docs/production.md has no runbook for {name}"
        assert name in tested
        assert name in fired, f"no test makes {name} fire"
