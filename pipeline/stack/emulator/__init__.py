"""The local stack's AWS emulator: moto in server mode plus named stand-ins.

Run as `python -m pipeline.stack.emulator --port 4566 --bridge-port 4567` (stack.up does).
Each stand-in follows AWS's rules and API shapes where moto falls short, so the deploy
logic never knows it talks to an emulator:

- scheduler.py     ECS's service scheduler: deployments roll on real containers,
                   minimum/maximum percent, health, draining, the circuit breaker
- agent.py         ECS's container agent: a task's containers on the local engine
- ecs_api.py       ECS's control plane around the scheduler (Create/Update/DeleteService,
                   RunTask, StopTask, ListTasks)
- service_deployments.py  ECS's service deployments: BLUE_GREEN, LINEAR and CANARY
                   lifecycle stages, PAUSE hooks, traffic shifts, rollback
- service_deployment_api.py  List/Describe/Continue/StopServiceDeployment
- refusals.py      ECS's request validation, with ECS's messages
- loadbalancer.py  the load balancer's data plane on loopback (weighted forwards, a port
                   per listener), and target health
- cloudformation.py  CloudFormation's ECS resources and change-set execution
- ecr_records.py   ECR's image records for pushes to the registry
- ecr_endpoint.py  ECR's registry endpoint in front of the registry: refuses a push to a
                   missing repository and one that would move an immutable tag
- engine.py        the container instance: the engine, labels, the speed-up factor
- moto_costs.py    moto server's fixed per-request work, done once (not a stand-in)
"""

from __future__ import annotations

import argparse
import atexit
import base64
import os
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit


def identity() -> dict[str, str]:
    """This emulator's code (a digest of the stand-ins' sources) and checkout: `stack.up`
    reuses a running emulator only when both are its own."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in sorted(here.rglob("*.py")):
        digest.update(source.read_bytes())
    return {"version": digest.hexdigest()[:16], "checkout": str(here.parents[2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--bridge-port", type=int, default=4567)
    parser.add_argument("--registry", default="http://127.0.0.1:5000")
    parser.add_argument("--registry-password", default="123456789012-auth-token")
    # Given, the emulator serves ECR's endpoint on --registry's port in front of this one.
    parser.add_argument("--registry-backend", default="")
    args = parser.parse_args()

    from . import (
        cloudformation,
        ecr_endpoint,
        ecr_records,
        ecs_api,
        engine,
        loadbalancer,
        moto_costs,
        refusals,
        scheduler,
        service_deployment_api,
    )

    ecr_records.RegistryBridge.identity = identity()

    engine.Settings.owner = f"http://127.0.0.1:{args.port}"
    engine.Settings.speed = max(float(os.environ.get("EMULATOR_SPEED", "10")), 1.0)
    engine.Settings.registry = args.registry.removeprefix("http://")
    engine.Settings.registry_password = args.registry_password
    # A previous run's tasks belong to state that is gone.
    engine.remove_own_containers()

    moto_costs.install()
    engine.one_request_at_a_time()
    refusals.install()
    ecs_api.install()
    service_deployment_api.install()
    loadbalancer.install()
    cloudformation.install()
    ecr_records.install_image_sizes()
    engine.EXITS.start()  # before any task: no container dies unseen
    scheduler.run_forever()

    # moto's server exits on SIGTERM (its own handler calls sys.exit): the tasks go with it.
    atexit.register(engine.shut_down)

    ecr_records.RegistryBridge.registry_url = args.registry_backend or args.registry
    ecr_records.RegistryBridge.registry_auth = base64.b64encode(
        f"AWS:{args.registry_password}".encode()
    ).decode()
    ecr_records.RegistryBridge.aws_endpoint = f"http://127.0.0.1:{args.port}"
    ecr_records.RegistryBridge.region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    bridge = ThreadingHTTPServer(("127.0.0.1", args.bridge_port), ecr_records.RegistryBridge)
    threading.Thread(target=bridge.serve_forever, daemon=True).start()
    if args.registry_backend:
        backend = urlsplit(args.registry_backend)
        ecr_endpoint.EcrEndpoint.backend = (backend.hostname or "127.0.0.1", backend.port or 80)
        ecr_endpoint.EcrEndpoint.region = ecr_records.RegistryBridge.region
        front = urlsplit(args.registry)
        endpoint = ThreadingHTTPServer(
            (front.hostname or "127.0.0.1", front.port or 80), ecr_endpoint.EcrEndpoint
        )
        endpoint.daemon_threads = True
        threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    print(
        f"ecs stand-in: health-check and deregistration timings run {engine.Settings.speed:g}x faster "
        "(EMULATOR_SPEED; a cluster tag ecs-pipeline:emulator-speed=1 keeps ECS's)",
        flush=True,
    )

    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])
