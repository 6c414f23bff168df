"""One meaning per flag across every task: no short letters (Invoke would hand each task
the first free letter, so `-t` was --timeout in deploy and --to in rollback, and `-f` is
Invoke's own --config before the task name), and a long name that means the same thing
wherever it appears."""

from __future__ import annotations

import copy
from collections import defaultdict

from invoke import Collection, Program

from pipeline.tasks import ns

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
    # --force: replace a rollout in progress, in the two verbs that start one; nothing else.
    assert meanings["force"] == {"deploy", "rollback"}
    # --port: where the image answers on this machine; init's port is the container's own.
    assert meanings["port"] == {"demo", "pull-and-run"}
    # --file: the release file; --to: rollback's revision; --tag: a git tag to plan for.
    assert (meanings["file"], meanings["to"], meanings["tag"]) == ({"release"}, {"rollback"}, {"ci", "plan"})


def test_no_task_flag_reuses_a_core_flag_of_the_program() -> None:
    core = {name for arg in Program(namespace=ns).core_args() for name in arg.names}
    clashes = {f"{task} --{names}" for task, found in flags(ns).items() for names in found if names in core}
    assert clashes == set()
