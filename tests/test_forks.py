"""The tests' forked `aws`, `invoke` and `ecs-pipeline` (tests/forks.py) answer as new processes do."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.forks import Forks
from tests.helpers import ROOT


def test_a_forked_aws_call_answers_as_the_aws_executable_does_success_and_failure(
    stack_environ: dict[str, str],
) -> None:
    cli = Forks("aws")
    for args in (
        # Answers other workers' tests cannot change while both calls run
        ["sts", "get-caller-identity", "--output", "json"],
        ["ecs", "describe-services", "--cluster", "no-such-cluster", "--services", "x", "--output", "json"],
    ):
        forked = cli.run(args, stack_environ)
        executable = subprocess.run(["aws", *args], env=stack_environ, capture_output=True, text=True)
        assert (forked.returncode, forked.stderr) == (executable.returncode, executable.stderr), args
        if executable.stdout.strip():
            assert json.loads(forked.stdout) == json.loads(executable.stdout)
    assert "ClusterNotFoundException" in forked.stderr and forked.returncode == 255  # v1: any service error


def test_each_forked_call_runs_with_its_own_environment_only(stack_environ: dict[str, str]) -> None:
    cli = Forks("aws")
    text = cli.run(["ecs", "list-clusters"], {**stack_environ, "AWS_DEFAULT_OUTPUT": "text"})
    default = cli.run(["ecs", "list-clusters"], stack_environ)
    assert text.returncode == default.returncode == 0, text.stderr + default.stderr
    assert not text.stdout.lstrip().startswith("{")
    assert isinstance(json.loads(default.stdout), dict)  # the earlier call's setting did not stay


@pytest.mark.parametrize(
    "args",
    [
        ["--list"],
        ["deploy", "--env", "nowhere", "--sha", "a" * 40],  # a settings error: one line, exit 2
        ["no-such-task"],
        ["plan", "--json", "--branch", "main", "--sha", "a" * 40],
    ],
)
def test_a_forked_invoke_call_answers_as_python_m_invoke_does(
    args: list[str], stack_environ: dict[str, str], tmp_path: Path
) -> None:
    env = {**stack_environ, "AWS_RESOURCE_NAME_PREFIX": "forks"}
    forked = Forks("invoke").run(args, env, ROOT)
    new = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert (forked.returncode, forked.stdout, forked.stderr) == (new.returncode, new.stdout, new.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["init", "--no-such-flag"],  # invoke's own refusal
        ["init", "--container-port", "0"],  # init's: one line, exit 2, nothing written
        ["init", "--command", "python3 -m app"],  # writes the scaffold
    ],
)
def test_a_forked_ecs_pipeline_call_answers_as_its_console_script_does(
    args: list[str], stack_environ: dict[str, str], tmp_path: Path
) -> None:
    answers = []
    repo = tmp_path / "repo"  # the same path both times: init prints it
    for run in ("forked", "script"):
        shutil.rmtree(repo, ignore_errors=True)
        (repo / "app").mkdir(parents=True)
        (repo / "app" / "__main__.py").write_text("print('hi')\n")
        if run == "forked":
            answer = Forks("ecs-pipeline").run(args, stack_environ, repo)
        else:
            answer = subprocess.run(
                [str(Path(sys.executable).parent / "ecs-pipeline"), *args],
                cwd=repo,
                env=stack_environ,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
        written = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
        answers.append((answer.returncode, answer.stdout, answer.stderr, written))
    assert answers[0] == answers[1]


def test_a_forked_invoke_call_runs_in_its_own_working_directory_and_process(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "import os\nfrom invoke import task\n\n"
        "@task\ndef where(c):\n    print(os.getcwd(), os.getpid(), os.environ.get('ONLY_HERE'))\n"
    )
    forks = Forks("invoke")
    first = forks.run(["where"], {"PATH": "/usr/bin:/bin", "ONLY_HERE": "yes"}, tmp_path)
    second = forks.run(["where"], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    cwd, pid, only = first.stdout.split()
    assert (cwd, only) == (str(tmp_path), "yes")
    assert second.stdout.split()[2] == "None" and second.stdout.split()[1] != pid


def test_a_forked_call_past_its_timeout_is_killed_and_raises(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "import time\nfrom invoke import task\n\n@task\ndef hang(c):\n    time.sleep(600)\n"
    )
    forks = Forks("invoke")
    with pytest.raises(subprocess.TimeoutExpired):
        forks.run(["hang"], {"PATH": "/usr/bin:/bin"}, tmp_path, timeout=3)
    again = forks.run(["--list"], {"PATH": "/usr/bin:/bin"}, tmp_path)  # a new server takes over
    assert again.returncode == 0 and "hang" in again.stdout


READERS = {"environ", "environb", "getenv", "getenvb"}


def _reads_the_environment_on_import(tree: ast.AST) -> list[int]:
    """Lines run on import (outside any function's body) that read os.environ or getenv."""
    found: list[int] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            # Its decorators and default values run on import; its body does not.
            decorators = getattr(node, "decorator_list", [])
            for part in [*decorators, *node.args.defaults, *node.args.kw_defaults]:
                if part is not None:
                    found += _reads_the_environment_on_import(ast.Expression(part))
            continue
        os_attribute = (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in READERS
        )
        from_os = (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and bool({alias.name for alias in node.names} & READERS)
        )
        if os_attribute or from_os:
            found.append(getattr(node, "lineno", 0))
        found += _reads_the_environment_on_import(node)
    return found


def test_no_module_the_invoke_server_preloads_reads_the_environment_on_import() -> None:
    # The server imports these once for every call (tests/forks.py): a module-level read
    # would hand each call the server's environment instead of its own.
    readers = {
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        if "emulator" not in path.parts
        for line in _reads_the_environment_on_import(ast.parse(path.read_text()))
    }
    assert readers == set()
    # The check itself: what it must see, and what it must not.
    seen = {
        "import os\nA = os.environ.get('A')\n": [2],
        "from os import getenv\n": [1],
        "import os\ndef f(a=os.environ):\n    pass\n": [2],
        "import os\ndef f():\n    return os.getenv('A')\n": [],
    }
    for source, lines in seen.items():
        assert _reads_the_environment_on_import(ast.parse(source)) == lines, source
