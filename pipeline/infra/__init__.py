"""Per-project infrastructure as code: `invoke setup` and `invoke teardown` with CloudFormation.

Two kinds of stack, from the templates in pipeline/templates/:

  <prefix>-project  what every environment shares: ECR repository, ECS cluster, log group,
                    execution and task roles, the CI identity and its policy
  <prefix>-<env>    one environment: the ECS service, its target group and listener rule,
                    a load balancer of its own unless a shared listener is configured, DNS

Decide, then act, one module each:

  names       the stacks' and roles' names, and the names AWS would refuse (pure)
  facts       what setup knows before it changes anything, and the rules over it (pure)
  lookups     `gather`: every read-only lookup and check on the aws seam
  parameters  each stack's template, parameters and tags from settings and facts (pure)
  changesets  change sets and stack events as a person reads them (pure)
  apply       `setup`: per stack `propose` a change set (the plan), show it, then `execute`
              it, following its events (a dry run `withdraw`s it instead)
  teardown    `teardown`: its plan, the confirmation, the deletion

Who owns the service's task definition: the deploy. The stack registers a first
revision only to create the service with (BootstrapTaskDefinition). Every later setup
passes the revision the service runs at that moment (LiveTaskDefinition), so CloudFormation
never sets the service back to an older revision than the last deploy.
"""

from __future__ import annotations

from .apply import (
    POLL_SECONDS,
    ChangeSetPlan,
    Sleep,
    StackResult,
    apply,
    delete_stack,
    execute,
    propose,
    setup,
    wait_for_stack,
    withdraw,
)
from .changesets import (
    DONE,
    NO_CHANGES,
    Change,
    changes_from,
    event_line,
    failure_message,
    is_no_change,
    root_cause,
    summary,
)
from .facts import (
    Facts,
    ListenerRule,
    Network,
    SharedListener,
    StackState,
    check_stack,
    choose_priority,
    conflicting_rule,
    newest_tag,
    project_cluster,
    zone_for,
)
from .lookups import describe_stack, gather
from .names import (
    TAG_PREFIX,
    TAG_STACK,
    ci_name,
    environment_stack_name,
    name_problems,
    path_patterns,
    project_stack_name,
)
from .parameters import (
    BOOTSTRAP_CPU,
    BOOTSTRAP_MEMORY,
    ENVIRONMENT_TEMPLATE,
    PROJECT_TEMPLATE,
    StackRequest,
    environment_parameters,
    project_parameters,
    stack_requests,
    template_body,
)
from .teardown import TeardownPlan, ask, teardown, teardown_plan

__all__ = [
    "BOOTSTRAP_CPU",
    "BOOTSTRAP_MEMORY",
    "DONE",
    "ENVIRONMENT_TEMPLATE",
    "NO_CHANGES",
    "POLL_SECONDS",
    "PROJECT_TEMPLATE",
    "TAG_PREFIX",
    "TAG_STACK",
    "Change",
    "ChangeSetPlan",
    "Facts",
    "ListenerRule",
    "Network",
    "SharedListener",
    "Sleep",
    "StackRequest",
    "StackResult",
    "StackState",
    "TeardownPlan",
    "apply",
    "ask",
    "changes_from",
    "check_stack",
    "choose_priority",
    "ci_name",
    "conflicting_rule",
    "delete_stack",
    "describe_stack",
    "environment_parameters",
    "environment_stack_name",
    "execute",
    "event_line",
    "failure_message",
    "gather",
    "is_no_change",
    "name_problems",
    "newest_tag",
    "path_patterns",
    "project_cluster",
    "project_parameters",
    "project_stack_name",
    "propose",
    "root_cause",
    "setup",
    "stack_requests",
    "summary",
    "teardown",
    "teardown_plan",
    "template_body",
    "wait_for_stack",
    "withdraw",
    "zone_for",
]
