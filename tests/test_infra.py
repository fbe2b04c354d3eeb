"""Deployment files checked without a Docker engine or an AWS account: the SAM template with
cfn-lint and by its wiring, the compose file by its services and MinIO's webhook wiring, the
Dockerfiles by what they copy and install."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cfnlint.api import lint, lint_file
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
TEMPLATE = INFRA / "template.yaml"
COMPOSE = INFRA / "compose.yaml"
WORKER_DOCKERFILE = INFRA / "docker" / "worker.Dockerfile"
HANDLER_DOCKERFILE = INFRA / "docker" / "handler.Dockerfile"
# What the handler must never pull in (DESIGN: it starts in milliseconds).
HEAVY = {"torch", "torchvision", "numpy", "pillow", "pil", "scipy", "boto3", "pillow-heif"}


# ------------------------------------------------------------------ the SAM template
@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def test_template_passes_cfn_lint() -> None:
    """cfn-lint (with the SAM transform) finds nothing in infra/template.yaml."""
    matches = lint_file(TEMPLATE)
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_cfn_lint_catches_a_broken_template() -> None:
    """The lint is live: a Lambda timeout past the limit is reported."""
    broken = TEMPLATE.read_text().replace("Timeout: 30", "Timeout: 9000")
    assert any(m.rule.id == "E3034" for m in lint(broken))


def test_handler_reads_sqs_with_partial_batch_responses(template) -> None:
    """The handler's event source is the event queue, with ReportBatchItemFailures, and the
    queue hides a message long enough for six handler timeouts."""
    res = template["Resources"]
    fn = res["Handler"]["Properties"]
    (event,) = fn["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["EventQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert res["EventQueue"]["Properties"]["VisibilityTimeout"] >= 6 * fn["Timeout"]
    assert fn["PackageType"] == "Image"


def test_event_queue_redrives_to_a_dead_letter_queue(template) -> None:
    """Messages that keep failing move to the dead-letter queue, which an alarm watches."""
    res = template["Resources"]
    redrive = res["EventQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert res["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    dims = res["DeadLetterAlarm"]["Properties"]["Dimensions"]
    assert dims[0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}


def test_bucket_notifies_the_queue_which_only_that_bucket_may_send_to(template) -> None:
    """Creates and removes go to the queue; the queue policy admits S3 for this bucket and
    this account only, and exists before the bucket's notification is saved."""
    res = template["Resources"]
    bucket = res["PhotoBucket"]
    configs = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert {c["Event"] for c in configs} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    assert all(c["Queue"] == {"Fn::GetAtt": ["EventQueue", "Arn"]} for c in configs)
    assert bucket["DependsOn"] == "EventQueuePolicy"
    policy = res["EventQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "EventQueue"}]
    (stmt,) = policy["PolicyDocument"]["Statement"]
    assert stmt["Principal"] == {"Service": "s3.amazonaws.com"}
    assert stmt["Action"] == "sqs:SendMessage"
    source = stmt["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source.endswith(":s3:::${PhotoBucketName}")
    assert bucket["Properties"]["BucketName"] == {"Ref": "PhotoBucketName"}
    assert stmt["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_handler_role_is_least_privilege(template) -> None:
    """The handler may receive and delete on its own queue and write its own logs; it has no
    S3 access and no wildcard action or resource."""
    role = template["Resources"]["HandlerRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert all(s["Effect"] == "Allow" and s["Resource"] != "*" for s in statements)
    sqs = [s for s in statements if any(a.startswith("sqs:") for a in s["Action"])]
    assert all(s["Resource"] == {"Fn::GetAtt": ["EventQueue", "Arn"]} for s in sqs)
    assert template["Resources"]["Handler"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["HandlerRole", "Arn"]
    }


def test_broker_and_database_are_secret_parameters_and_the_handler_gets_only_the_broker(
    template,
) -> None:
    """Both URLs are NoEcho parameters; the handler's environment holds the broker URL and
    nothing refers to the database URL but the workers' secret."""
    params = template["Parameters"]
    assert params["BrokerUrl"]["NoEcho"] is True and params["DatabaseUrl"]["NoEcho"] is True
    env = template["Resources"]["Handler"]["Properties"]["Environment"]["Variables"]
    assert env["CELERY_BROKER_URL"] == {"Ref": "BrokerUrl"}
    users = [name for name, res in template["Resources"].items() if "DatabaseUrl" in str(res)]
    assert users == ["WorkerSecret"]


# ------------------------------------------------------------------ the compose file
def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults (what a fresh checkout runs with)."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    return value.replace("$$", "$")


def _container_ports(service: dict) -> set[int]:
    ports = set()
    for p in service.get("ports", []):
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return ports


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_service_has_an_image_or_build_and_servers_publish_ports(compose) -> None:
    """Each service names an image or a build whose Dockerfile exists; every long-running
    service publishes a port; one-shot jobs do not restart."""
    services = compose["services"]
    assert {"postgres", "rabbitmq", "minio", "minio-init", "webhook", "migrate"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = (COMPOSE.parent / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), name
        if svc.get("restart") == "no":
            continue
        assert _container_ports(svc), f"{name} publishes no port"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg16")


def test_minio_notifications_reach_the_webhook_service(compose) -> None:
    """MinIO's webhook target points at the webhook service's published port and path, with
    the token the webhook checks; the init job adds put/delete events for that target."""
    services = compose["services"]
    minio_env = services["minio"]["environment"]
    targets = {k.rsplit("_", 1)[1] for k in minio_env if k.startswith("MINIO_NOTIFY_WEBHOOK_")}
    (target,) = targets
    assert minio_env[f"MINIO_NOTIFY_WEBHOOK_ENABLE_{target}"] == "on"
    url = urlsplit(_interpolate(minio_env[f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{target}"]))
    webhook = services[url.hostname]
    assert url.port in _container_ports(webhook)
    env = webhook["environment"]
    command = webhook["entrypoint"]
    assert command[:3] == ["python3", "-m", "handlers.webhook"]
    assert command[command.index("--port") + 1] == str(url.port)
    assert minio_env[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{target}"] == env["SIGHTLINE_WEBHOOK_TOKEN"]
    assert "DATABASE_URL" not in env  # the handler never needs the database
    assert webhook["build"]["dockerfile"] == "infra/docker/handler.Dockerfile"

    init = services["minio-init"]
    assert init["environment"]["WEBHOOK_ARN"] == f"arn:minio:sqs::{target}:webhook"
    script = "\n".join(init["command"])
    assert re.search(r"^mc mb --ignore-existing \"local/\$\$PHOTO_BUCKET\"$", script, re.M)
    add = next(line for line in script.splitlines() if line.startswith("mc event add"))
    args = shlex.split(add.replace("$$", "$"))
    assert args[args.index("--event") + 1] == "put,delete"
    assert args[-2:] == ["local/$PHOTO_BUCKET", "$WEBHOOK_ARN"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"


def test_gpu_worker_reserves_a_gpu_and_the_cpu_variant_does_not(compose) -> None:
    """The worker reserves an NVIDIA GPU; worker-cpu (its own profile) reserves none; both
    wait for the one-shot migration to succeed."""
    services = compose["services"]
    gpu, cpu = services["worker"], services["worker-cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["SIGHTLINE_DEVICE"] == "cuda"
    assert "deploy" not in cpu and cpu["environment"]["SIGHTLINE_DEVICE"] == "cpu"
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    for worker in (gpu, cpu):
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert worker["command"][0] == "worker"
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["build"]["dockerfile"] == "infra/docker/worker.Dockerfile"


def test_every_sightline_setting_in_compose_is_one_the_code_reads(compose) -> None:
    """A SIGHTLINE_* variable given to a sightline service is read somewhere in the code (a
    typo would be silently ignored otherwise); the webhook's own are its module's."""
    code = "\n".join(
        p.read_text()
        for d in ("sightline", "workers", "handlers")
        for p in (ROOT / d).rglob("*.py")
    )
    for name in ("worker", "worker-cpu", "migrate"):
        for var in compose["services"][name]["environment"]:
            if var.startswith("SIGHTLINE_"):
                assert f'"{var}"' in code, f"{name}: {var} is read nowhere"


# ------------------------------------------------------------------ the Dockerfiles
def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            op, _, rest = line.strip().partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pat.removeprefix("**/")) or fnmatch.fnmatch(prefix, pat)
        for pat in patterns
        for prefix in prefixes
    )


@pytest.mark.parametrize(
    "dockerfile", [WORKER_DOCKERFILE, HANDLER_DOCKERFILE], ids=lambda p: p.name
)
def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored(dockerfile: Path) -> None:
    """Every COPY source (the context is the repository root) exists and .dockerignore keeps
    it in the build context."""
    patterns = _dockerignore()
    copies = [args for op, args in _instructions(dockerfile) if op == "COPY"]
    assert copies
    for args in copies:
        words = shlex.split(args)
        if any(w.startswith("--from") for w in words):
            continue
        for src in [w for w in words if not w.startswith("--")][:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
            assert not _ignored(src, patterns), f"{dockerfile.name}: {src} is in .dockerignore"


def _requirements(extras: set[str]) -> set[str]:
    """Distribution names the project pulls in with these extras (self-references followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names, todo, seen = set(), list(project["dependencies"]), set()
    todo += [r for e in extras for r in project["optional-dependencies"][e]]
    while todo:
        req = todo.pop()
        name = re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower()
        if name == project["name"]:
            inner = re.search(r"\[([^\]]*)\]", req)
            for e in inner.group(1).split(",") if inner else []:
                if e.strip() not in seen:
                    seen.add(e.strip())
                    todo += project["optional-dependencies"][e.strip()]
        else:
            names.add(name)
    return names


def _pip_extras(dockerfile: Path) -> set[str]:
    runs = " ".join(args for op, args in _instructions(dockerfile) if op == "RUN")
    found = re.findall(r'"\.\[([a-z,]+)\]"', runs)
    assert found, f"{dockerfile.name} installs no extra of the project"
    return {e for group in found for e in group.split(",")}


def test_handler_image_is_the_lambda_base_with_the_handler_extra_only() -> None:
    """The handler image starts from AWS's Lambda Python image, installs the `handler` extra
    (no torch, PIL, numpy, boto3 among its requirements), copies no worker or model code, and
    names the Lambda entry point that exists."""
    steps = _instructions(HANDLER_DOCKERFILE)
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert args["LAMBDA_BASE"].startswith("public.ecr.aws/lambda/python:")
    assert _pip_extras(HANDLER_DOCKERFILE) == {"handler"}
    assert not (_requirements({"handler"}) & HEAVY)
    assert all("torch" not in a.lower() for op, a in steps if op == "RUN")
    copied = {shlex.split(a)[-2] for op, a in steps if op == "COPY" and "--from" not in a}
    assert not {"workers", "./workers", "models", "./models", "sightline", "./sightline"} & copied
    assert steps[-1] == ("CMD", '["handlers.lambda_function.handler"]')
    from handlers import lambda_function

    assert callable(lambda_function.handler)


def test_worker_image_is_cuda_with_the_worker_extra_and_sightline_entrypoint() -> None:
    """The worker image defaults to a CUDA base, installs the `worker` extra, copies every
    package the project ships, and runs `sightline worker`."""
    steps = _instructions(WORKER_DOCKERFILE)
    base = next(a for op, a in steps if op == "ARG" and a.startswith("BASE_IMAGE="))
    assert base.split("=", 1)[1].startswith("nvidia/cuda:")
    assert _pip_extras(WORKER_DOCKERFILE) == {"worker"}
    assert {"torch", "torchvision"} <= _requirements({"worker"})
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {shlex.split(a)[-1].strip("./").split("/")[0] for op, a in steps if op == "COPY"}
    assert packages <= copied, packages - copied
    assert ("ENTRYPOINT", '["sightline"]') in steps and steps[-1] == ("CMD", '["worker"]')


@pytest.mark.slow
def test_handler_image_build_step_makes_a_wheel_with_the_handler(tmp_path) -> None:
    """What the handler image's build stage copies (pyproject, README, handlers/) builds a
    wheel holding the Lambda entry point and the task contract, and no other package."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    for pkg in ("handlers",):
        subprocess.run(["cp", "-r", str(ROOT / pkg), str(src / pkg)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("sightline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "handlers/lambda_function.py" in names and "handlers/contract.py" in names
    assert not [n for n in names if n.startswith(("workers/", "models/", "sightline/"))]
