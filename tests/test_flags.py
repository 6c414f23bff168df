"""One meaning per flag across every task: no short letters (Invoke would hand each task
the first free letter, so `-t` was --timeout in deploy and --to in rollback, and `-f` is
Invoke's own --config before the task name), and a long name that means the same thing
wherever it appears."""

from __future__ import annotations

import copy
import os
from collections import defaultdict

import pytest
from invoke import Collection, Program

from pipeline.tasks import ns
from tests.helpers import invoke

# Long names that must not come back with another meaning (the findings).
RENAMED = {"delete-images": {"teardown"}, "overwrite": {"init"}, "container-port": {"init"}}


def flags(collection: Collection, prefix: str = "") -> dict[str, dict[str, str]]:
    """task name → {flag names: help}"""
    found: dict[str, dict[str, str]] = {}
    for name, task in collection.tasks.items():
        helps = {k.replace("_", "-"): v for k, v in task.help.items()}
        # get_arguments pops each flag's help off the task: ask a copy, not the shared ns.
        probe = copy.copy(task)
        probe.help = dict(task.help)
        found[prefix + name] = {
            "/".join(arg.names): helps.get(arg.names[0], "") for arg in probe.get_arguments()
        }
    for name, sub in collection.collections.items():
        found.update(flags(sub, f"{name}."))
    return found


def test_no_task_flag_has_a_short_letter() -> None:
    letters = {
        f"{task} {names}" for task, found in flags(ns).items() for names in found if len(names.split("/")) > 1
    }
    assert letters == set()


def test_each_long_flag_name_means_one_thing() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)
    for task, found in flags(ns).items():
        for names in found:
            meanings[names].add(task)
    for name, tasks in RENAMED.items():
        assert meanings[name] == tasks, name
    # --force: override another deployer's claim on the service: replace its rollout in
    # progress (the two verbs that start one) or break its deploy lock; nothing else.
    assert meanings["force"] == {"deploy", "rollback", "lock.release"}
    # --port: where the image answers on this machine; init's port is the container's own.
    assert meanings["port"] == {"demo", "pull-and-run"}
    # --file: the release file; --to: rollback's revision; --tag: a git tag to plan for.
    assert (meanings["file"], meanings["to"], meanings["tag"]) == ({"release"}, {"rollback"}, {"ci", "plan"})


def test_no_task_flag_reuses_a_core_flag_of_the_program() -> None:
    core = {name for arg in Program(namespace=ns).core_args() for name in arg.names}
    clashes = {f"{task} --{names}" for task, found in flags(ns).items() for names in found if names in core}
    assert clashes == set()


@pytest.mark.parametrize("name", sorted(flags(ns)))
def test_help_after_the_task_name_prints_its_help_and_runs_nothing(name: str) -> None:
    # An endpoint nothing listens on: a task that ran would fail there, not print help.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_RESOURCE_NAME_PREFIX": "orders"}
    proc = invoke(name, "--help", env=env, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} ")
    assert "==>" not in proc.stdout  # no step started


@pytest.mark.parametrize("name", ["deploy", "status", "logs", "run-task", "smoke"])
def test_a_missing_required_flag_is_one_line_and_exit_code_2(name: str) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_RESOURCE_NAME_PREFIX": "orders"}
    proc = invoke(name, env=env, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"error: --env is required; see `invoke {name} --help`\n"


@pytest.mark.parametrize(
    ("flag", "value", "line"),
    [
        ("--timeout", "abc", "error: --timeout 'abc': not a number\n"),
        ("--timeout", "180.5", "error: --timeout '180.5': give a whole number\n"),
        ("--timeout", "-5", "error: --timeout '-5': give a number of seconds, 0 or more\n"),
        (
            "--rollback-timeout",
            "nan",
            "error: --rollback-timeout 'nan': give a number of seconds, 0 or more\n",
        ),
    ],
)
def test_a_bad_number_for_a_numeric_flag_is_one_line_and_exit_code_2(
    flag: str, value: str, line: str
) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_RESOURCE_NAME_PREFIX": "orders"}
    proc = invoke("rollback", "--env", "prod", flag, value, env=env, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line)


def test_a_whole_number_written_with_a_decimal_point_is_taken() -> None:
    # Invoke's own int("180.0") raised a traceback; now the task goes on to its next step,
    # here the AWS endpoint nothing listens on.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_RESOURCE_NAME_PREFIX": "orders"}
    proc = invoke("rollback", "--env", "prod", "--timeout", "180.0", env=env, timeout=120)
    assert "Traceback" not in proc.stderr and "--timeout" not in proc.stderr
    assert proc.returncode == 3, proc.stderr  # AWS unreachable: the flag was taken
