"""Which CI jobs may hold an environment's deploy rights. Pure, apart from nothing.

What the platforms really enforce (README, "CI identity"):
- IAM evaluates only a few claims of a web identity token from a generic OIDC provider
  such as CircleCI's: `aud` and `sub` (custom claims such as
  `oidc.circleci.com/vcs-ref` are not condition keys).
- CircleCI's `$CIRCLE_OIDC_TOKEN` has sub `org/<org>/project/<project>/user/<user>`,
  which names no ref; `$CIRCLE_OIDC_TOKEN_V2` appends `/vcs-origin/<origin>/vcs-ref/<ref>`.
  So each environment's deploy role trusts only V2 subjects whose ref the CI policy maps
  to that environment (mainline branches and -prod tags for prod).
- CircleCI's context restrictions (an expression on pipeline values) decide which jobs
  get the context holding the role's ARN: the second lock, set by an org admin.
- `require_ci_ref` refuses, inside the tool, a deploy the policy does not map to the
  job's ref: defence in depth, never the only lock (a job can run any command).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import git
from .config import CIPolicy, Settings
from .errors import ConfigError

# IAM's StringLike: "*" matches any run of characters (slashes too), "?" exactly one.
# A CircleCI user id is a UUID: 36 "?" pin its length, so no "*" before the ref can
# absorb a crafted branch name such as "x/vcs-ref/refs/heads/main".
_UUID_CHARS = "?" * 36
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What a trusted subject must look like once rendered: literal ids, exactly the 36 "?" of the
# user, a literal origin, and a ref whose only wildcard is the one before a tag suffix.
_SUBJECT = re.compile(
    rf"^org/{_UUID}/project/{_UUID}/user/\?{{36}}/vcs-origin/[a-z0-9.-]+(?:/[A-Za-z0-9_.-]+)+"
    r"/vcs-ref/refs/(?:heads/\*?[A-Za-z0-9_./-]+|tags/\*[A-Za-z0-9_.-]+)$"
)


def trusted_refs(policy: CIPolicy, env: str) -> list[str]:
    """The git refs whose CI jobs the policy lets deploy `env` (refs/heads/..., refs/tags/*suffix)."""
    refs = []
    if policy.mainline_environment == env:
        refs += [f"refs/heads/{branch}" for branch in policy.mainline_branches]
    refs += [f"refs/tags/*{suffix}" for suffix, name in policy.tag_environments if name == env]
    return refs


def push_refs(policy: CIPolicy) -> list[str]:
    """The git refs whose CI jobs push deployable images: the mainline's (when its plan
    pushes). Feature branches and tags never push (tags deploy what was pushed), and -dev
    branches push to a repository of their own (dev_push_refs)."""
    if "push" not in policy.mainline_steps:
        return []
    return [f"refs/heads/{branch}" for branch in policy.mainline_branches]


def dev_push_refs(policy: CIPolicy) -> list[str]:
    """The git refs whose CI jobs push into the dev repository: -dev branches, when their
    plan pushes. Their role can write no other repository, so no tag they push deploys."""
    if policy.dev_suffix and "push" in policy.dev_steps:
        return [f"refs/heads/*{policy.dev_suffix}"]
    return []


def dev_branch_job(policy: CIPolicy, environ: Mapping[str, str]) -> bool:
    """Whether this is a CI job of a -dev branch, by CircleCI's own ref (the one IAM sees,
    whatever --branch says): its images go to the dev repository."""
    branch = environ.get("CIRCLE_BRANCH", "")
    return (
        environ.get("CIRCLECI") == "true"
        and bool(branch and policy.dev_suffix)
        and not environ.get("CIRCLE_TAG")
        and branch not in policy.mainline_branches
        and branch.endswith(policy.dev_suffix)
    )


def vcs_origin(source_url: str) -> str:
    """The repository as CircleCI's V2 token names it: host/owner/name, no scheme or .git."""
    head = source_url.split("/", 1)[0]
    if "://" not in source_url and ("@" in head or ":" in head):
        return ""  # git@host:owner/name is no URL; setup asks for one
    parts = urlsplit(source_url if "://" in source_url else f"https://{source_url}")
    path = parts.path.strip("/").removesuffix(".git")
    return f"{parts.hostname}/{path}" if parts.hostname and path else ""


def trusted_subjects(org_id: str, project_id: str, origin: str, refs: list[str]) -> list[str]:
    """StringLike patterns for the `sub` of $CIRCLE_OIDC_TOKEN_V2, one per trusted ref."""
    prefix = f"org/{org_id}/project/{project_id}/user/{_UUID_CHARS}/vcs-origin/{origin}/vcs-ref/"
    return [prefix + ref for ref in refs]


def context_name(env: str) -> str:
    return f"aws-{env}"


def context_expression(policy: CIPolicy, env: str) -> str:
    """The CircleCI context restriction (expression) for `env`'s context."""
    terms = []
    if policy.mainline_environment == env:
        terms += [f'pipeline.git.branch == "{branch}"' for branch in policy.mainline_branches]
    terms += [
        f'pipeline.git.tag ends-with "{suffix}"' for suffix, name in policy.tag_environments if name == env
    ]
    return _restriction(terms)


def _restriction(terms: list[str]) -> str:
    """A context restriction admitting any of `terms`; "false" admits no job."""
    if not terms:
        return "false"
    # A job rerun with SSH could read the role's credentials by hand.
    return f"({' or '.join(terms)}) and not job.ssh.enabled"


def role_name(prefix: str, env: str) -> str:
    return f"{prefix}-deploy-{env}"[:64]


def role_subjects(settings: Settings, refs: list[str], role: str) -> list[str]:
    """The checked `sub` patterns a CI role trusts for `refs` (none without OIDC)."""
    infra = settings.infra
    if infra.ci_identity != "oidc":
        return []
    origin = vcs_origin(settings.source_url)
    if not origin:
        raise ConfigError(
            '[tool.pipeline] source_url: needed with ci_identity = "oidc": the CI roles trust '
            "only this repository's refs (e.g. https://github.com/example/service)"
        )
    subjects = trusted_subjects(infra.circleci_org_id or "", infra.circleci_project_id or "", origin, refs)
    # Checked as what it becomes: a subject that any setting widened never reaches IAM.
    for subject in subjects:
        if not _SUBJECT.match(subject):
            raise ConfigError(
                f"[tool.pipeline.infra] the {role} would trust {subject!r}, which is not one "
                "repository's ref: check circleci_org_id, circleci_project_id, source_url and [tool.pipeline.ci]"
            )
    return subjects


def deploy_role_parameters(settings: Settings, env: str) -> dict[str, str]:
    """The environment stack's parameters for its own CI deploy role."""
    infra = settings.infra
    subjects = role_subjects(settings, trusted_refs(settings.ci, env), f"{env} deploy role")
    return {
        "CiIdentity": infra.ci_identity,
        "CiDeployRoleName": role_name(settings.prefix, env),
        "CircleCiOrgId": infra.circleci_org_id or "",
        "CiTrustedSubjects": ",".join(subjects),
        "RepositoryName": settings.repository,
    }


def trusted_patterns(trust: Mapping[str, Any]) -> list[str]:
    """The `sub` patterns a trust policy (as IAM returns it) admits, in every statement."""
    patterns: list[str] = []
    for statement in trust.get("Statement", []):
        for test in ("StringLike", "StringEquals"):
            for key, value in (statement.get("Condition", {}).get(test) or {}).items():
                if key.endswith(":sub"):
                    patterns += value if isinstance(value, list) else [value]
    return patterns


def trust_lines(role: str, trust: Mapping[str, Any]) -> list[str]:
    """A role's trust policy as IAM returned it: what it really admits, not what setup meant."""
    return [
        f"  {role} trusts (read back from IAM) the sub of tokens matching:",
        *(f"    {pattern}" for pattern in trusted_patterns(trust) or ["(no subject condition)"]),
        f"  trust policy of {role}: {json.dumps(trust, sort_keys=True)}",
    ]


def setup_lines(settings: Settings, env: str, role_arn: str | None, trust: Mapping[str, Any]) -> list[str]:
    """What `invoke setup` prints for the CircleCI side, which no API here can set, and the
    deploy role's trust policy read back from IAM."""
    if settings.infra.ci_identity != "oidc":
        return []
    return _context_lines(
        context_name(env),
        role_arn or "<the CiDeployRoleArn output>",
        context_expression(settings.ci, env),
        role_name(settings.prefix, env),
        trust,
    )


# The contexts that hold the push roles: the mainline's, and -dev branches' own.
PUSH_CONTEXT = "aws"
DEV_PUSH_CONTEXT = "aws-dev"


def push_context_expression(policy: CIPolicy, dev: bool) -> str:
    """The CircleCI context restriction for the push role's context (dev: the -dev role's)."""
    if dev:
        terms = [f'pipeline.git.branch ends-with "{policy.dev_suffix}"'] if dev_push_refs(policy) else []
    else:
        terms = (
            [f'pipeline.git.branch == "{b}"' for b in policy.mainline_branches] if push_refs(policy) else []
        )
    return _restriction(terms)


def push_setup_lines(
    settings: Settings, dev: bool, role: str, role_arn: str | None, trust: Mapping[str, Any]
) -> list[str]:
    """The CircleCI side of a push role: its context, the restriction, its trust read back."""
    if settings.infra.ci_identity != "oidc":
        return []
    output = "CiDevRoleArn" if dev else "CiRoleArn"
    return _context_lines(
        DEV_PUSH_CONTEXT if dev else PUSH_CONTEXT,
        role_arn or f"<the {output} output>",
        push_context_expression(settings.ci, dev),
        role,
        trust,
    )


def _context_lines(
    name: str, role_arn: str, expression: str, role: str, trust: Mapping[str, Any]
) -> list[str]:
    return [
        f"CircleCI: context {name} holds AWS_ROLE_ARN={role_arn}",
        f"  restrict it (Organization Settings → Contexts → {name} → Add Expression Restriction) to:",
        f"  {expression}",
        *trust_lines(role, trust),
    ]


def require_reviewed_commit(
    root: Path, policy: CIPolicy, environ: Mapping[str, str], env: str, sha: str
) -> None:
    """In a CircleCI tag job that deploys the mainline's environment (a -prod tag), the
    tagged commit must be on a mainline branch: a tag on an unreviewed commit of a feature
    branch must not reach prod. IAM cannot see commits (the token names the ref only), so
    this is the tool's check, made with git against origin's branches."""
    if environ.get("CIRCLECI") != "true" or not environ.get("CIRCLE_TAG"):
        return
    if env != policy.mainline_environment or not policy.mainline_branches:
        return
    containing, missing = git.on_branches(root, sha, policy.mainline_branches)
    if containing:
        return
    tag = environ["CIRCLE_TAG"]
    if len(missing) == len(policy.mainline_branches):
        raise ConfigError(
            f"--env {env}: tag {tag!r} deploys {env} only if {sha[:12]} is on a mainline branch, and none "
            f"of origin/{', origin/'.join(policy.mainline_branches)} could be read (git fetch failed); "
            "check the clone's remote origin"
        )
    raise ConfigError(
        f"--env {env}: tag {tag!r} names {sha[:12]}, which is not on "
        f"{' or '.join(b for b in policy.mainline_branches if b not in missing)}: only reviewed (merged) "
        f"commits deploy {env}; merge it, then tag the merge"
    )


def require_ci_ref(policy: CIPolicy, environ: Mapping[str, str], env: str) -> None:
    """In a CircleCI job, refuse to deploy an environment the CI policy does not map to
    the job's own ref (whatever --branch/--tag say). Defence in depth: the deploy role's
    trust policy and the context restriction are the locks."""
    from . import plan

    if environ.get("CIRCLECI") != "true":
        return
    tag, branch = environ.get("CIRCLE_TAG"), environ.get("CIRCLE_BRANCH")
    kind, ref = ("tag", tag) if tag else ("branch", branch)
    if not ref:
        raise ConfigError(f"--env {env}: a CircleCI job without CIRCLE_BRANCH or CIRCLE_TAG may not deploy")
    try:
        mapped = plan.make(kind, ref, policy).environment  # type: ignore[arg-type]
    except ConfigError:
        mapped = None
    if mapped != env:
        raise ConfigError(
            f"--env {env}: this CircleCI job runs for {kind} {ref!r}, which the CI policy maps to "
            f"{mapped or 'no environment'}; it may not deploy {env} (`invoke plan --{kind} {ref}` shows the policy)"
        )
