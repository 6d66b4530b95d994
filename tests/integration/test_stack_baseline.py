"""`docker stack config` (the real Docker client) accepts stack.yml with stack.baseline.yml layered on, and
merges it as baseline mode needs."""

from __future__ import annotations

from lab.paths import REPO_ROOT as ROOT
from lab.swarm.stack_check import reference_problems, schema_errors
from tests.integration.test_stack_file import STACK, config_of

BASELINE = ROOT / "stack.baseline.yml"


def test_docker_merges_the_baseline_overlay() -> None:
    plain, config = config_of(STACK), config_of(STACK, BASELINE)
    broker = config["services"]["mosquitto"]
    assert broker["command"][2].startswith(
        'sed "s|{prefix}|$TOPIC_PREFIX|g" /mosquitto/config/acl.baseline.template /mosquitto/config/acl.template'
    )
    assert broker["command"][2].endswith("exec mosquitto -c /mosquitto/config/swarm.conf")
    targets = {c["source"]: c["target"] for c in broker["configs"]}
    assert targets == {
        "mosquitto_base": "/mosquitto/config/conf.d/base.conf",
        "mosquitto_swarm": "/mosquitto/config/swarm.conf",
        "mosquitto_acl": "/mosquitto/config/acl.template",
        "mosquitto_acl_baseline": "/mosquitto/config/acl.baseline.template",
    }
    assert config["configs"]["mosquitto_swarm"]["file"] == str(ROOT / "services/mosquitto/swarm.baseline.conf")
    assert config["configs"]["mosquitto_acl_baseline"]["name"] == "ai-system-mosquitto-acl-baseline-1"
    master = config["services"]["master"]["environment"]
    assert master == {**plain["services"]["master"]["environment"], "ALLOW_BASELINE_WORKERS": "true"}
    assert "ALLOW_BASELINE_WORKERS" not in plain["services"]["master"]["environment"]
    for name in ("worker-python", "worker-go", "worker-java"):
        assert config["services"][name] == plain["services"][name]
    assert schema_errors(config) == []
    assert reference_problems(config) == []
