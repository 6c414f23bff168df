"""STAND-IN for the load balancer's data plane: each ALB answers HTTP on loopback.

Every load balancer created in the emulator gets an HTTP server on a free 127.0.0.1
port, and its DNSName is that address, `127.0.0.1:PORT` (the one difference from AWS:
a name with a port instead of a host name on port 80). Its lowest-port listener answers
there; each other listener (a blue/green test listener) gets its own free loopback port, and
every listener carries the tag `ecs-pipeline:emulator-address` = `127.0.0.1:PORT` saying
where it answers. Requests follow the listener's rules by priority (path-pattern,
host-header, the default action) to forward to a target group (weighted across target
groups by ForwardConfig, as an ALB does), answer a fixed response or redirect. Targets are registered by the ECS
scheduler (or RegisterTargets); each target group's health check (path, interval,
thresholds, matcher) decides their state, which DescribeTargetHealth reports, and a
deregistered target drains for the group's deregistration delay. Only loopback targets
are ever contacted; any other address stays unavailable.
"""

from __future__ import annotations

import fnmatch
import http.client
import itertools
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import engine

LOOPBACK = "127."


@dataclass
class Target:
    id: str
    port: int
    speed: float
    state: str = "initial"  # initial | healthy | unhealthy | draining
    reason: str = "Elb.RegistrationInProgress"
    description: str = "Target registration is in progress"
    ok: int = 0
    failed: int = 0
    next_check: float = 0.0
    drain_until: float = 0.0


TARGETS: dict[str, dict[tuple[str, int], Target]] = {}
SERVERS: dict[str, ThreadingHTTPServer] = {}
# A listener with its own loopback port: server port -> listener ARN.
LISTENER_PORTS: dict[int, str] = {}
ADDRESS_TAG = "ecs-pipeline:emulator-address"
_rotation = itertools.count()
_weights = random.Random()


def _group(arn: str) -> Any:
    from moto.elbv2.models import elbv2_backends

    for account in list(elbv2_backends.keys()):
        for region in list(elbv2_backends[account].keys()):
            group = elbv2_backends[account][region].target_groups.get(arn)
            if group is not None:
                return group
    return None


def register(arn: str, target_id: str, port: int, speed: float | None = None) -> bool:
    if _group(arn) is None:
        return False
    with engine.LOCK:
        TARGETS.setdefault(arn, {})[(target_id, int(port))] = Target(
            target_id, int(port), speed or engine.Settings.speed
        )
    return True


def deregister(arn: str, target_id: str, port: int, speed: float | None = None) -> float:
    """Start draining; returns the (scaled) deregistration delay."""
    group = _group(arn)
    with engine.LOCK:
        target = TARGETS.get(arn, {}).get((target_id, int(port)))
        if target is None or group is None:
            return 0.0
        delay = engine.scaled(
            float(group.attributes.get("deregistration_delay.timeout_seconds", 300)), target.speed
        )
        target.state, target.reason = "draining", "Target.DeregistrationInProgress"
        target.description = "Target deregistration is in progress"
        target.drain_until = time.monotonic() + delay
    return delay


def target_state(arn: str, target_id: str, port: int) -> str:
    target = TARGETS.get(arn, {}).get((target_id, int(port)))
    return target.state if target else "unused"


def target_reason(arn: str, target_id: str, port: int) -> str:
    target = TARGETS.get(arn, {}).get((target_id, int(port)))
    return f"reason {target.description}" if target else "reason Target.NotRegistered"


# --- health checks ------------------------------------------------------------------------


def _matches(code: int, matcher: str) -> bool:
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        if low and int(low) <= code <= int(high or low):
            return True
    return False


def _check(group: Any, target: Target) -> None:
    path = group.health_check_path or "/"
    configured = str(group.health_check_port or "traffic-port")
    port = target.port if configured in ("traffic-port", str(group.port)) else int(configured)
    matcher = (group.matcher or {}).get("HttpCode", "200")
    code = 0
    try:
        with urllib.request.urlopen(
            f"http://{target.id}:{port}{path}", timeout=float(group.health_check_timeout_seconds or 5)
        ) as resp:
            code = resp.status
    except urllib.error.HTTPError as err:
        code = err.code
    except (OSError, ValueError):
        pass  # no answer: Target.FailedHealthChecks
    ok = bool(code) and _matches(code, matcher)
    with engine.LOCK:
        if target.state == "draining":
            return
        if ok:
            target.ok, target.failed = target.ok + 1, 0
            if target.ok >= int(group.healthy_threshold_count or 5):
                target.state, target.reason, target.description = "healthy", "", ""
        else:
            target.failed, target.ok = target.failed + 1, 0
            if target.failed >= int(group.unhealthy_threshold_count or 2):
                target.state, target.reason = (
                    "unhealthy",
                    "Target.ResponseCodeMismatch" if code else "Target.FailedHealthChecks",
                )
                target.description = (
                    f"Health checks failed with these codes: [{code}]" if code else "Health checks failed"
                )


def check_forever() -> None:
    def loop() -> None:
        while True:
            now = time.monotonic()
            for arn, targets in list(TARGETS.items()):
                group = None  # looked up (a walk over moto's backends) once a check is due
                for key, target in list(targets.items()):
                    if target.state == "draining":
                        if now >= target.drain_until:
                            with engine.LOCK:
                                targets.pop(key, None)
                        continue
                    if now < target.next_check:
                        continue
                    group = group or _group(arn)
                    if group is None:
                        continue
                    if not target.id.startswith(LOOPBACK):
                        target.state, target.reason = "unavailable", "Target.NotInUse"
                        target.description = "the local load balancer reaches 127.0.0.0/8 only"
                        target.next_check = float("inf")
                        continue
                    target.next_check = now + engine.scaled(
                        float(group.health_check_interval_seconds or 30), target.speed
                    )
                    threading.Thread(target=_check, args=(group, target), daemon=True).start()
            time.sleep(0.05)

    threading.Thread(target=loop, name="target-health", daemon=True).start()


# --- the data plane -------------------------------------------------------------------------


def _balancer(port: int) -> Any:
    from moto.elbv2.models import elbv2_backends

    for account in list(elbv2_backends.keys()):
        for region in list(elbv2_backends[account].keys()):
            for balancer in list(elbv2_backends[account][region].load_balancers.values()):
                if balancer.dns_name == f"127.0.0.1:{port}":
                    return balancer
    return None


def _condition_matches(condition: dict[str, Any], path: str, host: str, method: str) -> bool:
    field = condition.get("Field")
    if field == "path-pattern":
        values = (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values") or []
        return any(fnmatch.fnmatchcase(path, v) for v in values)
    if field == "host-header":
        values = (condition.get("HostHeaderConfig") or {}).get("Values") or condition.get("Values") or []
        return any(fnmatch.fnmatch(host.lower(), v.lower()) for v in values)
    if field == "http-request-method":
        return method in ((condition.get("HttpRequestMethodConfig") or {}).get("Values") or [])
    return False


def route(balancer: Any, path: str, host: str, method: str, listener_arn: str | None = None) -> list[Any]:
    """The actions of the first matching rule of the listener (by default the balancer's
    first HTTP listener that has no loopback port of its own)."""
    listener = balancer.listeners.get(listener_arn) if listener_arn else None
    if listener is None:
        own = set(LISTENER_PORTS.values())
        listeners = sorted((lst for lst in balancer.listeners.values() if lst.arn not in own), key=_rank)
        if not listeners:
            return []
        listener = listeners[0]
    rules = sorted(listener._non_default_rules.values(), key=lambda r: int(r.priority))
    for rule in rules:
        if all(_condition_matches(c, path, host, method) for c in rule.conditions):
            return list(rule.actions)
    return list(listener.default_actions)


def _balancer_of_listener(listener_arn: str) -> Any:
    found = find_listener(listener_arn)
    return found[0] if found else None


def find_listener(listener_arn: str) -> tuple[Any, Any] | None:
    """(balancer, listener) for a listener ARN."""
    from moto.elbv2.models import elbv2_backends

    for account in list(elbv2_backends.keys()):
        for region in list(elbv2_backends[account].keys()):
            for balancer in list(elbv2_backends[account][region].load_balancers.values()):
                listener = balancer.listeners.get(listener_arn)
                if listener is not None:
                    return balancer, listener
    return None


def pick_target_group(data: dict[str, Any]) -> str | None:
    """A forward action's target group: TargetGroupArn, or one of ForwardConfig's groups
    chosen at random in proportion to its Weight (0 gets none), as an ALB does."""
    if data.get("TargetGroupArn"):
        return str(data["TargetGroupArn"])
    groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
    weighted = [(g.get("TargetGroupArn"), float(g.get("Weight", 1) or 0)) for g in groups]
    total = sum(w for _, w in weighted)
    if total <= 0:
        return weighted[0][0] if weighted else None
    point = _weights.uniform(0, total)
    for arn, weight in weighted:
        if weight > 0 and point <= weight:
            return arn
        point -= weight
    return next(arn for arn, weight in reversed(weighted) if weight > 0)


def find_rule(rule_arn: str) -> tuple[Any, Any] | None:
    """(listener, rule) for a listener rule ARN, the listener's default rule included."""
    from moto.elbv2.models import elbv2_backends

    for account in list(elbv2_backends.keys()):
        for region in list(elbv2_backends[account].keys()):
            for balancer in list(elbv2_backends[account][region].load_balancers.values()):
                for listener in list(balancer.listeners.values()):
                    rule: Any = listener._non_default_rules.get(rule_arn)
                    if rule is None and listener._default_rule[0].arn == rule_arn:
                        rule = listener._default_rule[0]
                    if rule is not None:
                        return listener, rule
    return None


def rule_forward(rule_arn: str) -> list[tuple[str, float]]:
    """The (target group, weight) pairs a rule's forward action sends to."""
    found = find_rule(rule_arn)
    if found is None:
        return []
    for action in found[1].actions:
        data = action.data
        if data.get("Type") == "forward":
            if data.get("TargetGroupArn"):
                return [(data["TargetGroupArn"], 1.0)]
            groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
            return [(g["TargetGroupArn"], float(g.get("Weight", 1) or 0)) for g in groups]
    return []


def set_forward(rule_arn: str, weights: list[tuple[str, int]]) -> None:
    """Rewrite a rule's forward action to these (target group, weight) pairs, as ECS
    modifies the listener rules of a blue/green service (DescribeRules shows it)."""
    from moto.elbv2.models import FakeAction

    found = find_rule(rule_arn)
    if found is None:
        return
    listener, rule = found
    actions = []
    for action in rule.actions:
        data = dict(action.data)
        if data.get("Type") == "forward":
            data.pop("TargetGroupArn", None)
            data["ForwardConfig"] = {
                "TargetGroups": [{"TargetGroupArn": arn, "Weight": int(w)} for arn, w in weights],
                "TargetGroupStickinessConfig": {"Enabled": False},
            }
        actions.append(FakeAction(data))
    with engine.LOCK:
        rule.actions = actions
        if rule is listener._default_rule[0]:
            listener.default_actions = actions


def _port(server: Any) -> int:
    return int(server.server_address[1])


class DataPlane(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        listener_arn = LISTENER_PORTS.get(_port(self.server))
        balancer = _balancer_of_listener(listener_arn) if listener_arn else _balancer(_port(self.server))
        if balancer is None:
            return self._reply(503, b"", "text/plain")
        path = self.path.split("?", 1)[0]
        host = (self.headers.get("Host") or "").split(":")[0]
        actions = sorted(
            route(balancer, path, host, self.command, listener_arn),
            key=lambda a: int(a.data.get("Order") or 1),
        )
        for action in actions:
            kind = action.data.get("Type")
            if kind == "fixed-response":
                config = action.data.get("FixedResponseConfig") or {}
                return self._reply(
                    int(config.get("StatusCode", 200)),
                    (config.get("MessageBody") or "").encode(),
                    config.get("ContentType") or "text/plain",
                )
            if kind == "redirect":
                config = action.data.get("RedirectConfig") or {}
                location = f"{config.get('Protocol', 'HTTP').lower().replace('#{protocol}', 'http')}://{self.headers.get('Host')}{path}"
                code = 301 if config.get("StatusCode") == "HTTP_301" else 302
                return self._reply(code, b"", "text/plain", {"Location": location})
            if kind == "forward":
                return self._forward(pick_target_group(action.data), body)
        return self._reply(404, b"Not Found", "text/plain")

    def _forward(self, arn: str | None, body: bytes) -> None:
        targets = [t for t in TARGETS.get(arn or "", {}).values() if t.state != "draining"]
        healthy = [t for t in targets if t.state == "healthy"]
        # All unhealthy: the ALB fails open and routes to all of them.
        pool = healthy or [t for t in targets if t.state == "unhealthy"]
        if not pool:
            return self._reply(
                503, b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", "text/html"
            )
        target = pool[next(_rotation) % len(pool)]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = str(_port(self.server))
        try:
            conn = http.client.HTTPConnection(target.id, target.port, timeout=60)
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except OSError:
            return self._reply(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        extra = {
            k: v
            for k, v in resp.getheaders()
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-type")
        }
        self._reply(resp.status, data, resp.getheader("Content-Type") or "text/plain", extra)

    def _reply(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def open_data_plane(balancer: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DataPlane)
    server.daemon_threads = True
    balancer.dns_name = f"127.0.0.1:{server.server_address[1]}"
    SERVERS[balancer.arn] = server
    threading.Thread(target=server.serve_forever, name=f"alb {balancer.name}", daemon=True).start()


def close_data_plane(arn: str) -> None:
    server = SERVERS.pop(arn, None)
    if server is not None:
        server.shutdown()
        server.server_close()


def open_listener(backend: Any, balancer: Any, listener: Any) -> None:
    """The balancer's lowest-port (plain HTTP first) listener answers at its DNSName, as
    port 80 would on AWS; any other on a loopback port of its own. The tag says where."""
    own = set(LISTENER_PORTS.values())
    at_dns = next(
        (lst for lst in balancer.listeners.values() if lst.arn != listener.arn and lst.arn not in own), None
    )
    if at_dns is not None and _rank(listener) < _rank(at_dns):
        _own_port(backend, at_dns)  # a lower port arrived: it takes the DNSName
        at_dns = None
    if at_dns is None:
        backend.tagging_service.tag_resource(listener.arn, [{"Key": ADDRESS_TAG, "Value": balancer.dns_name}])
    else:
        _own_port(backend, listener)


def _rank(listener: Any) -> tuple[bool, int]:
    return listener.protocol != "HTTP", int(listener.port)  # plain HTTP first: the data plane speaks it


def _own_port(backend: Any, listener: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DataPlane)
    server.daemon_threads = True
    port = int(server.server_address[1])
    LISTENER_PORTS[port] = listener.arn
    SERVERS[listener.arn] = server
    threading.Thread(target=server.serve_forever, name=f"listener {listener.port}", daemon=True).start()
    backend.tagging_service.tag_resource(listener.arn, [{"Key": ADDRESS_TAG, "Value": f"127.0.0.1:{port}"}])


def close_listener(arn: str) -> None:
    for port, listener_arn in list(LISTENER_PORTS.items()):
        if listener_arn == arn:
            del LISTENER_PORTS[port]
    close_data_plane(arn)


def install() -> None:
    """Patch moto's ELBv2 so balancers get a data plane and target health is real."""
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    original_create = ELBv2Backend.create_load_balancer
    original_delete = ELBv2Backend.delete_load_balancer
    original_create_listener = ELBv2Backend.create_listener
    original_delete_listener = ELBv2Backend.delete_listener

    def create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        balancer = original_create(self, *args, **kwargs)
        if balancer.type == "application" and balancer.arn not in SERVERS:
            open_data_plane(balancer)
        return balancer

    def delete_load_balancer(self: Any, arn: str) -> None:
        balancer = self.load_balancers.get(arn)
        listeners = list(balancer.listeners) if balancer is not None else []
        original_delete(self, arn)
        close_data_plane(arn)
        for listener in listeners:
            close_listener(listener)

    def create_listener(self: Any, load_balancer_arn: str, *args: Any, **kwargs: Any) -> Any:
        listener = original_create_listener(self, load_balancer_arn, *args, **kwargs)
        balancer = self.load_balancers.get(load_balancer_arn)
        if balancer is not None and balancer.arn in SERVERS:
            open_listener(self, balancer, listener)
        return listener

    def delete_listener(self: Any, listener_arn: str) -> Any:
        listener = original_delete_listener(self, listener_arn)
        close_listener(listener_arn)
        return listener

    def register_targets(self: Any, group: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
        for target in targets:
            register(group.arn, target["Id"], int(target.get("Port") or group.port))

    def deregister_targets(self: Any, group: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
        for target in targets:
            deregister(group.arn, target["Id"], int(target.get("Port") or group.port))

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> list[Any]:
        from moto.elbv2.exceptions import TargetGroupNotFoundError

        group = self.target_groups.get(target_group_arn)
        if group is None:
            raise TargetGroupNotFoundError()
        known = TARGETS.get(target_group_arn, {})
        wanted = [(t["Id"], int(t.get("Port") or group.port)) for t in targets] if targets else list(known)
        answers = []
        for key in wanted:
            target = known.get(key)
            if target is None:
                answers.append(
                    FakeHealthStatus(
                        key[0],
                        str(key[1]),
                        group.health_check_port,
                        "unused",
                        "Target.NotRegistered",
                        "Target is not registered to the target group",
                    )
                )
            else:
                answers.append(
                    FakeHealthStatus(
                        key[0],
                        str(key[1]),
                        group.health_check_port,
                        target.state,
                        target.reason or None,
                        target.description or None,
                    )
                )
        return answers

    ELBv2Backend.create_load_balancer = create_load_balancer  # type: ignore[method-assign]
    ELBv2Backend.delete_load_balancer = delete_load_balancer  # type: ignore[method-assign]
    ELBv2Backend.create_listener = create_listener  # type: ignore[method-assign]
    ELBv2Backend.delete_listener = delete_listener  # type: ignore[method-assign]
    FakeTargetGroup.register = lambda self, targets: register_targets(None, self, targets)  # type: ignore[method-assign]
    FakeTargetGroup.deregister = lambda self, targets: deregister_targets(None, self, targets)  # type: ignore[method-assign]
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]
    check_forever()
