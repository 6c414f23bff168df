"""The tests' `aws` CLI (tests/awscli_forks.py) answers as the `aws` executable does."""

from __future__ import annotations

import json
import subprocess

from tests.awscli_forks import AwsCli


def test_a_forked_call_answers_as_the_aws_executable_does_success_and_failure(
    stack_environ: dict[str, str],
) -> None:
    cli = AwsCli()
    for args in (
        ["ecs", "list-clusters", "--output", "json"],
        ["ecs", "describe-services", "--cluster", "no-such-cluster", "--services", "x", "--output", "json"],
    ):
        forked = cli.run(args, stack_environ)
        executable = subprocess.run(["aws", *args], env=stack_environ, capture_output=True, text=True)
        assert (forked.returncode, forked.stderr) == (executable.returncode, executable.stderr), args
        if executable.stdout.strip():
            assert json.loads(forked.stdout) == json.loads(executable.stdout)
    assert "ClusterNotFoundException" in forked.stderr and forked.returncode == 255  # v1: any service error


def test_each_forked_call_runs_with_its_own_environment_only(stack_environ: dict[str, str]) -> None:
    cli = AwsCli()
    text = cli.run(["ecs", "list-clusters"], {**stack_environ, "AWS_DEFAULT_OUTPUT": "text"})
    default = cli.run(["ecs", "list-clusters"], stack_environ)
    assert text.returncode == default.returncode == 0, text.stderr + default.stderr
    assert not text.stdout.lstrip().startswith("{")
    assert isinstance(json.loads(default.stdout), dict)  # the earlier call's setting did not stay
