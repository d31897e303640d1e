"""SLURM execution: the profile in profiles/slurm, checked on its own (every GPU rule routed, site
values only in the site block, the test overlay changing only site values) and against a real
single-node SLURM controller (tests/slurm_cluster.py): a small workflow of rules named like the
profile's GPU and training rules checks the job geometry and the retry of a failed job, and the
demo workflow runs through `--profile profiles/slurm --profile profiles/slurm-test`, and through
the same with the small-jobs overlay `profiles/slurm-small` between them, with every non-local
rule in a SLURM job, GPU rules in the gpu partition with a GPU request, CPU rules without, and
results equal to the local run's.

The cluster tests skip (with the reason) where SLURM cannot run: not root, programs missing and
no apt-get. Where it can (CI: root with apt), a failure to install or start it fails them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import slurm_cluster
import yte
from conftest import copy_workflow
from polars.testing import assert_frame_equal

from polyculture.logs import OFFLINE_ENV
from polyculture.placement import (
    GROUPS_ENV,
    PACKED_GROUPS_ENV,
    PLACEMENT_ENV,
    placed,
    placed_threads,
    site_groups,
    site_placement,
)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
OVERLAY = REPO / "profiles" / "slurm-test" / "config.yaml"
SMALL = REPO / "profiles" / "slurm-small" / "config.yaml"
SITE_NAMES = (
    "ACCOUNT",
    "CPU_PARTITION",
    "GPU_PARTITION",
    "GPU_MODEL",
    "STATUS_COMMAND",
    "QOS",
    "GPU_CONSTRAINT",
    "GPUS_PER_NODE",
    "SLURM_EXTRA",
    "RESOURCE_OVERRIDES",
)
#: Resources that carry site values (they may differ between the profile and the overlay).
SITE_RESOURCES = {"slurm_account", "slurm_partition", "gpu_model"}
#: Keys the overlay may add on top of the site values: what a test cluster needs.
OVERLAY_KEYS = {
    "default-resources",
    "slurm-status-command",
    "slurm-init-seconds-before-status-checks",
    "slurm-keep-successful-logs",
    "jobs",
}
#: The rules that run models (their `resources:` come from polyculture.placement.placed).
MODEL_RULES = {"train_lora", "wvs_survey", "wvs_judge", "blend_generate", "sample_responses"}
#: Environment of the SLURM runs: no hub (an endpoint on the discard port refuses connections).
NO_NETWORK = {"HF_ENDPOINT": "http://127.0.0.1:9", "TOKENIZERS_PARALLELISM": "false"}
#: Keys the small-jobs overlay may set: packing, and the runtime of what it packs.
SMALL_KEYS = {"groups", "group-components", "resources", "set-resource-scopes", "set-resources"}
STACKS = slurm_cluster.PROFILE_STACKS
#: The test overlay after the production profile, as Snakemake loads them (the overlay's
#: definitions render the production profile first, then change its placement).
OVERLAY_STACK = OVERLAY


def slurm_args(stack: str) -> tuple[str, ...]:
    """Snakemake's arguments of a profile stack on the test cluster, verbose."""
    return (*slurm_cluster.profile_args(stack), "--verbose")


# ---------------------------------------------------------------- helpers


def render(profile: Path | str, cwd: Path = REPO) -> dict:
    """A profile as Snakemake reads it (YTE rendered); relative paths resolve from `cwd`."""
    return render_with_placement(profile, cwd)[0]


def render_with_placement(profile: Path | str, cwd: Path = REPO) -> tuple[dict, dict | None]:
    """A rendered profile and the site settings it hands the workflow (POLYCULTURE_PLACEMENT,
    read by polyculture.placement); this process's environment is left as it was.
    The job groups a profile hands the workflow (POLYCULTURE_GROUPS, with an overlay's
    POLYCULTURE_GROUPS_PACKED over them: polyculture.placement.site_groups) appear under the key
    `groups`, as Snakemake's own option would hold them."""
    text = profile.read_text() if isinstance(profile, Path) else profile
    names = (PLACEMENT_ENV, GROUPS_ENV, PACKED_GROUPS_ENV)
    old = {name: os.environ.pop(name, None) for name in names}
    try:
        with contextlib.chdir(cwd):
            rendered = yte.process_yaml(text, require_use_yte=True)
        if GROUPS_ENV in text:  # this profile hands groups on (not the test overlay)
            rendered["groups"] = site_groups()
        return rendered, site_placement()
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def placement_of(profile: Path | str) -> dict:
    """The site settings a profile hands the workflow."""
    site = render_with_placement(profile)[1]
    assert site is not None, "the profile sets no POLYCULTURE_PLACEMENT"
    return site


def with_site(text: str, **values: str) -> str:
    """The profile text with site-block assignments replaced (NAME = "value")."""
    for name, value in values.items():
        text, n = re.subn(rf'^(\s*- {name} = )"[^"]*"', rf'\g<1>"{value}"', text, flags=re.M)
        assert n == 1, f"site value {name} is not assigned exactly once in {PROFILE}"
    return text


def gpu_entries(profile: dict) -> dict[str, dict]:
    """set-resources entries that request GPUs (they name a GPU model or a count)."""
    return {
        rule: res
        for rule, res in profile.get("set-resources", {}).items()
        if "gpu_model" in res or "gpu" in res
    }


def probe_workflow(workdir: Path) -> tuple[dict[str, list[str]], set[str], set[str]]:
    """From the parsed workflow: rule name → names of the resources the rule declares, the
    names of the localrules, and those of the rules that declare no GPU for every job (`gpu`
    the constant 0: an API rule, which runs on the submit host where compute nodes are
    offline)."""
    probe = workdir / "probe_resources.smk"
    probe.write_text(
        'include: "Snakefile"\n'
        "import json as _json\n"
        'print("RULE_RESOURCES " + _json.dumps({r.name: sorted(r.resources.keys())'
        " for r in workflow.rules}))\n"
        'print("LOCAL_RULES " + _json.dumps(sorted(workflow._localrules)))\n'
        'print("NO_GPU_RULES " + _json.dumps(sorted(r.name for r in workflow.rules'
        ' if "gpu" in r.resources and not r.resources["gpu"].is_evaluable()'
        ' and r.resources["gpu"].value == 0)))\n'
    )
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(probe), "--list-rules"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # as under profiles/slurm: the rules declare their placement
            PLACEMENT_ENV: json.dumps(placement_of(PROFILE)),
        },
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    resources = next(x for x in lines if x.startswith("RULE_RESOURCES "))
    local = next(x for x in lines if x.startswith("LOCAL_RULES "))
    no_gpu = next(x for x in lines if x.startswith("NO_GPU_RULES "))
    return (
        json.loads(resources.removeprefix("RULE_RESOURCES ")),
        set(json.loads(local.removeprefix("LOCAL_RULES "))),
        set(json.loads(no_gpu.removeprefix("NO_GPU_RULES "))),
    )


@dataclass
class SlurmRun:
    """One Snakemake run through the SLURM executor and what SLURM recorded of it."""

    workdir: Path
    returncode: int
    wall_s: float
    log: str
    jobs: list[dict[str, str]]
    stack: str = "production"

    def jobs_of(self, rule: str) -> list[dict[str, str]]:
        return [j for j in self.jobs if j["rule"] == rule]

    def sbatch_calls(self, rule: str) -> list[str]:
        """The plugin's sbatch command lines for `rule` (from --verbose), without the payload."""
        calls = re.findall(r"^sbatch call: (sbatch .*?) --wrap=", self.log, flags=re.M)
        return [c for c in calls if re.search(rf"--comment rule_{rule}(?:_wildcards_\S*)?\s", c)]

    def job_log(self, jobid: str) -> Path:
        """The plugin's log of a SLURM job (named in the submission line)."""
        m = re.search(rf"has been submitted with SLURM jobid {jobid} \(log: (\S+)\)\.", self.log)
        assert m, f"no submission of SLURM job {jobid} in the Snakemake log"
        return Path(m.group(1))

    def group_of(self, jobid: str) -> str | None:
        """`<group id>_<its rules>` of a group job (the plugin's log folder, maybe shortened
        with '...'), or None for a job of one rule."""
        rel = self.job_log(jobid).relative_to(self.workdir / ".snakemake" / "slurm_logs")
        return rel.parts[0].removeprefix("group_") if rel.parts[0][:6] == "group_" else None

    def members(self, jobid: str) -> list[str]:
        """The rule of each Snakemake job a SLURM job ran, from its log: one per distinct
        (rule, output) block (the job's Snakemake and its srun step print each block)."""
        seen: set[tuple[str, str]] = set()
        rule = None
        for line in self.job_log(jobid).read_text(errors="replace").splitlines():
            if m := re.fullmatch(r"\s*rule (\S+):", line):
                rule = m.group(1)
            elif rule and (m := re.fullmatch(r"\s*output: (.+)", line)):
                seen.add((rule, m.group(1)))
                rule = None
        return sorted(r for r, _ in seen)

    def job_stats(self) -> Counter:
        """Rule → number of jobs, from the job stats Snakemake prints before it starts."""
        m = re.search(r"Job stats:\njob\s+count\n[-\s]+\n((?:\S+\s+\d+\n)+)", self.log)
        assert m, "no job stats in the Snakemake log"
        rows = (line.split() for line in m.group(1).splitlines())
        return Counter({name: int(n) for name, n in rows if name != "total"})


def scontrol_jobs(workdir: Path) -> list[dict[str, str]]:
    """Every job SLURM still knows (MinJobAge keeps finished ones) whose work dir is `workdir`."""
    proc = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    jobs = []
    for line in proc.stdout.splitlines():
        fields = dict(re.findall(r"([\w:/]+)=(\S*)", line))
        if fields.get("WorkDir") != str(workdir):
            continue
        m = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", fields.get("Comment", ""))
        fields["rule"] = m.group(1) if m else ""
        jobs.append(fields)
    return sorted(jobs, key=lambda j: int(j["JobId"]))


def run_through_slurm(
    workdir: Path, *args: str, timeout: int, stack: str = "production"
) -> SlurmRun:
    """Run Snakemake in `workdir` with a stack of SLURM profiles and the test overlay, under
    timeout -k."""
    # The network cut off: a hub endpoint that refuses every connection, and an empty local
    # cache. Snakemake itself (and so the localrules) is not told to be offline: the cluster jobs
    # must be offline by the workflow's own doing (rules/common.smk).
    env = {**os.environ, **NO_NETWORK, "HF_HOME": str(workdir / "hf-cache")}
    for name in (*OFFLINE_ENV, "SLURM_CONF"):
        env.pop(name, None)
    log_path = workdir / "slurm-run.log"
    t0 = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(
            ["timeout", "-k", "20", str(timeout), SNAKEMAKE, *slurm_args(stack), *args],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    wall = time.monotonic() - t0
    text = log_path.read_text(errors="replace")
    return SlurmRun(workdir, proc.returncode, wall, text, scontrol_jobs(workdir))


def gpu_request(job: dict[str, str]) -> str:
    """The GPU part of a job's TRES request ('' when it asked for none)."""
    return ",".join(t for t in job.get("TresPerJob", "").split(",") if "gpu" in t)


# ---------------------------------------------------------------- the profile on its own


@pytest.fixture(scope="session")
def profile() -> dict:
    return render(PROFILE)


@pytest.fixture(scope="module")
def overlay() -> dict:
    return render(OVERLAY)


@pytest.fixture(scope="session")
def small_overlay() -> dict:
    return render(SMALL)


@pytest.fixture(scope="module")
def workflow_probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, set[str], set[str]]:
    return probe_workflow(copy_workflow(tmp_path_factory.mktemp("slurm-rules")))


@pytest.fixture(scope="module")
def rule_resources(workflow_probe) -> dict[str, list[str]]:
    return workflow_probe[0]


@pytest.fixture(scope="module")
def local_rules(workflow_probe) -> set[str]:
    return workflow_probe[1]


def test_localrules_are_cpu_rules(rule_resources, local_rules: set[str], workflow_probe) -> None:
    """No GPU rule runs on the submit host; every localrule exists; the downloads are local
    (compute nodes are offline) and so is the prefetch."""
    assert local_rules <= set(rule_resources), local_rules - set(rule_resources)
    no_gpu = workflow_probe[2]
    gpu_rules = {r for r, keys in rule_resources.items() if "gpu" in keys} - no_gpu
    assert not local_rules & gpu_rules, local_rules & gpu_rules
    downloads = {"prefetch", "prefetch_item", "blend_fetch", "alignment_fetch_responses"}
    assert downloads <= local_rules, downloads - local_rules
    # every other CPU rule is small and local, except the model builds (minutes of CPU work)
    cluster_cpu = {"build_tiny_chat", "build_tiny_embed", "build_real_model"}
    cpu_jobs = {r for r in set(rule_resources) - gpu_rules - local_rules if r != "all"}
    assert cpu_jobs <= cluster_cpu, (
        f"CPU rules neither local nor a model build: {cpu_jobs - cluster_cpu}"
    )


@pytest.mark.parametrize("stack", list(STACKS))
def test_groups_are_rules_and_chains_share_resources(
    stack: str, profile: dict, small_overlay: dict, rule_resources
) -> None:
    """Every grouped rule exists; rules of one group ask the same resources (a group job runs
    them in turn, with one request); a group of one rule packs its jobs (group-components);
    group-components names only groups."""
    rendered = stack_profile(stack, profile, small_overlay)
    groups = rendered["groups"]
    assert set(groups) <= set(rule_resources), set(groups) - set(rule_resources)
    for name in set(groups.values()):
        members = [r for r, g in groups.items() if g == name]
        assert len(members) >= 2 or name in rendered["group-components"], (name, members)
        requests = {
            json.dumps(rendered.get("set-resources", {}).get(r, {}), sort_keys=True)
            for r in members
        }
        assert len(requests) == 1, (name, requests)
    assert set(rendered["group-components"]) <= set(groups.values())


def repacked_rules(profile: dict, small_overlay: dict) -> set[str]:
    """The rules whose group the small-jobs overlay sets or changes."""
    return {r for r, g in small_overlay["groups"].items() if profile["groups"].get(r) != g}


def test_small_overlay_packs_one_gpu_jobs_only(
    profile: dict, small_overlay: dict, rule_resources: dict[str, list[str]]
) -> None:
    """The small-jobs overlay changes only packing: production's groups stay or are widened, the
    rules it groups are model rules (a packed job holds one GPU), each asks 30 min instead of
    production's time, GPUs are counted per submission only; nothing else differs."""
    assert set(small_overlay) == SMALL_KEYS, set(small_overlay) ^ SMALL_KEYS
    assert small_overlay["resources"] == {"gpu": 1}
    assert small_overlay["set-resource-scopes"] == {"gpu": "local"}
    assert set(profile["groups"]) <= set(small_overlay["groups"])
    assert profile["group-components"].items() <= small_overlay["group-components"].items()
    repacked = repacked_rules(profile, small_overlay)
    assert {"blend_generate", "lm_eval", "wvs_survey", "wvs_judge"} <= repacked, repacked
    for rule in repacked:
        assert "gpu" in rule_resources[rule], rule
        assert small_overlay["set-resources"][rule]["runtime"] == "30 * attempt", rule
    assert "train_lora" not in small_overlay["groups"]  # several GPUs: never packed
    strip = lambda r, d: {k: v for k, v in d.items() if not (k == "runtime" and r in repacked)}  # noqa: E731
    production = profile.get("set-resources", {})
    assert set(small_overlay["set-resources"]) == set(production) | repacked
    for rule, res in small_overlay["set-resources"].items():
        assert strip(rule, res) == strip(rule, production.get(rule, {})), rule


def test_small_overlay_groups_per_model_in_a_dry_run(tmp_path: Path) -> None:
    """Snakemake accepts the overlay's wildcard groups and builds per-model group jobs from them
    (a dry run of the demo: no cluster needed)."""
    work = copy_workflow(tmp_path / "dry")
    proc = subprocess.run(
        [SNAKEMAKE, "-n", *slurm_args("small")],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **OFFLINE_ENV},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    group_jobs = Counter(re.findall(r"\] Group job (\S+) \(", proc.stdout + proc.stderr))
    for model in ("tiny-chat", "tiny-chat-full"):
        assert group_jobs[f"evaluate_{model}"] == 1, group_jobs
        assert group_jobs[f"judge_{model}"] == 1, group_jobs
    assert group_jobs["consensus_responses"] == 1, group_jobs


def test_site_block_holds_every_site_value(profile: dict) -> None:
    text = PROFILE.read_text()
    begin, end = text.index("SITE BLOCK"), text.index("end of the site block")
    block = text[begin:end]
    for name in SITE_NAMES:
        assert re.search(rf"^\s*(?:- )?{name} = ", block, flags=re.M), (
            f"{name} not in the site block"
        )
    other = with_site(
        text, ACCOUNT="acct9", CPU_PARTITION="small", GPU_PARTITION="h200q", GPU_MODEL="b200"
    )
    changed, site = render_with_placement(other)
    assert changed["default-resources"]["slurm_account"] == "acct9"
    assert changed["default-resources"]["slurm_partition"] == "small"
    assert site is not None
    assert (site["gpu_partition"], site["cpu_partition"], site["gpu_model"]) == (
        "h200q",
        "small",
        "b200",
    )
    # Nothing but the site resources changed: no partition or GPU name outside the block.
    strip = lambda d: {k: v for k, v in d.items() if k not in SITE_RESOURCES}  # noqa: E731
    assert strip(changed["default-resources"]) == strip(profile["default-resources"])
    assert "set-resources" not in changed and "set-resources" not in profile
    rest = lambda d: {k: v for k, v in d.items() if k not in ("default-resources", "set-resources")}  # noqa: E731
    assert rest(changed) == rest(profile)
    no_account = render(with_site(text, ACCOUNT=""))
    assert "slurm_account" not in no_account["default-resources"]


def test_profile_settings(profile: dict) -> None:
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1
    assert profile["slurm-requeue"] is True
    defaults = profile["default-resources"]
    for key in ("slurm_partition", "mem_mb", "runtime"):
        assert key in defaults, key
    # A GPU model among the defaults would make the plugin ask a GPU for every CPU job.
    assert not {"gpu", "gpu_model", "gres"} & defaults.keys()


def test_gpu_jobs_are_one_task() -> None:
    """The plugin turns `tasks` into --ntasks-per-gpu for GPU jobs unless tasks_per_gpu is 0:
    a training job would then be one task per GPU instead of one accelerate process group.
    Training books its GPUs on one node."""
    site = placement_of(PROFILE)
    one = placed(1, site)
    assert one["tasks_per_gpu"] == 0 and one["cpus_per_gpu"] == 8
    train = placed(8, site, minutes=720, multi_gpu=True)
    assert train["nodes"] == 1 and train["tasks_per_gpu"] == 0 and train["gpu"] == 8


def test_placement_follows_what_a_job_runs() -> None:
    """One rule, two jobs: the one of a local model books its engine's GPUs in the GPU
    partition, the one of an API model none, in the CPU partition, without a GPU type."""
    site = placement_of(PROFILE)
    res = placed(lambda w: 0 if w == "api" else 4, site)
    assert [res[k]("local") for k in ("gpu", "slurm_partition", "gpu_model")] == [4, "gpu", "h200"]
    assert [res[k]("api") for k in ("gpu", "slurm_partition", "gpu_model")] == [0, "cpu", ""]
    assert res["runtime"]("local", 2) == 480 and res["mem_mb_per_cpu"]("api", 1) == 8000
    assert [placed_threads(n, site)(None) for n in (0, 1)] == [1, 8]
    assert placed(1, None) == {"gpu": 1, "network": 0} and placed_threads(1, None)(None) == 1


def test_every_gpu_rule_is_placed_by_the_workflow(
    profile: dict, rule_resources: dict[str, list[str]]
) -> None:
    """No rule name list in the profile: every rule that declares `gpu` declares its placement
    (polyculture.placement.placed: partition, GPU type) itself."""
    assert gpu_entries(profile) == {} and "set-threads" not in profile
    declared = {rule for rule, keys in rule_resources.items() if "gpu" in keys}
    assert declared >= MODEL_RULES, MODEL_RULES - declared
    for rule in declared:
        assert {"slurm_partition", "gpu_model", "tasks_per_gpu"} <= set(rule_resources[rule]), rule


def with_overrides(text: str, overrides: str) -> str:
    """The profile text with the site block's RESOURCE_OVERRIDES dict replaced."""
    text, n = re.subn(
        r"^(\s*)RESOURCE_OVERRIDES = \{.*?^\1\}",
        rf"\1RESOURCE_OVERRIDES = {overrides}",
        text,
        flags=re.M | re.S,
    )
    assert n == 1, f"RESOURCE_OVERRIDES is not assigned exactly once in {PROFILE}"
    return text


def test_resource_overrides_merge_after_the_gpu_rules(profile: dict) -> None:
    """A site's per-rule overrides change only the keys they name, on CPU and GPU rules alike."""
    assert render(with_overrides(PROFILE.read_text(), "{}")) == profile
    overrides = (
        '{"mixed_model": {"mem_mb": "32000 * attempt"}, '
        '"wvs_survey": {"runtime": "600 * attempt", "mem_mb_per_cpu": 12000}}'
    )
    changed = render(with_overrides(PROFILE.read_text(), overrides))
    assert changed["set-resources"] == {
        "mixed_model": {"mem_mb": "32000 * attempt"},
        "wvs_survey": {"runtime": "600 * attempt", "mem_mb_per_cpu": 12000},
    }


def test_qos_constraint_and_extra_flags_slots(profile: dict) -> None:
    assert not {"qos", "constraint"} & profile["default-resources"].keys()
    text = with_site(PROFILE.read_text(), QOS="high", GPU_CONSTRAINT="h200&ib")
    text = with_site(text, SLURM_EXTRA="--mail-type=FAIL")
    changed, site = render_with_placement(text)
    defaults = changed["default-resources"]
    assert defaults["qos"] == "high"
    assert defaults["slurm_extra"] == "--mail-type=FAIL"
    res = placed(lambda w: w, site)
    assert res["constraint"](1) == "h200&ib" and res["constraint"](0) == ""
    assert "constraint" not in placed(1, placement_of(PROFILE))


def test_documented_plugin_options_exist(profile: dict) -> None:
    """Each commented `slurm-...:` option in the profile is a setting of the installed plugin
    (or the executor-independent keep-logs flag), so the documentation cannot drift."""
    from snakemake_executor_plugin_slurm import ExecutorSettings

    settings = {f"slurm-{f.replace('_', '-')}" for f in ExecutorSettings.__dataclass_fields__}
    documented = re.findall(r"^# (slurm-[a-z-]+):", PROFILE.read_text(), flags=re.M)
    assert {"slurm-logdir", "slurm-efficiency-report"} <= set(documented), documented
    assert set(documented) <= settings, set(documented) - settings
    assert set(k for k in profile if k.startswith("slurm-")) <= settings


def test_overlay_changes_only_site_values(profile: dict, overlay: dict) -> None:
    assert set(overlay) <= OVERLAY_KEYS, set(overlay) - OVERLAY_KEYS
    assert overlay["slurm-status-command"] == "squeue"
    strip = lambda d: {k: v for k, v in d.items() if k not in SITE_RESOURCES}  # noqa: E731
    assert strip(overlay["default-resources"]) == strip(profile["default-resources"])
    assert overlay["default-resources"]["slurm_partition"] == "cpu"
    assert "slurm_account" not in overlay["default-resources"]
    # The overlay keeps the production (or small-jobs) set-resources: their site values are the
    # test cluster's already (the partitions and GPU type the site block names by default).
    spec = slurm_cluster.NodeSpec()
    site = placement_of(PROFILE)
    assert (site["gpu_partition"], site["gpu_model"]) == (spec.gpu_partition, spec.gpu_type)
    assert profile["default-resources"]["slurm_partition"] == spec.cpu_partition
    # model jobs on the test node run one thread (the workflow reads it from the placement)
    assert placement_of(OVERLAY_STACK)["threads_per_gpu_job"] == 1


# ---------------------------------------------------------------- a real SLURM cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running single-node cluster for the session; its daemons are stopped afterwards."""
    try:
        install_s = slurm_cluster.install()
        c = slurm_cluster.start(tmp_path_factory.mktemp("slurm-state"))
    except slurm_cluster.SlurmUnavailable as e:
        pytest.skip(f"no SLURM test cluster here: {e}")
    c.install_s = install_s
    print(f"\nSLURM test cluster: install {install_s:.1f} s, start {c.start_s:.1f} s")
    try:
        yield c
    finally:
        slurm_cluster.stop(c.state_dir)


MECHANICS_SNAKEFILE = """\
# Rules named like the workflow's model rule {gpu_rule} and training rule {train_rule}, placed as
# the real ones are (polyculture.placement with the profile's site settings).
from polyculture.placement import placed, site_placement

rule all:
    input: "cpu.txt", "gpu.txt", "train.txt", "flaky.txt"

rule cpu_step:
    output: "cpu.txt"
    shell: "echo $SLURM_JOB_ID $SLURM_JOB_PARTITION > {{output}}"

rule {gpu_rule}:
    input: "cpu.txt"
    output: "gpu.txt"
    resources: **placed(1, site_placement())
    shell: "echo $CUDA_VISIBLE_DEVICES > {{output}}"

rule {train_rule}:
    input: "cpu.txt"
    output: "train.txt"
    resources: **placed({train_gpus}, site_placement(), minutes=720, multi_gpu=True), tasks=1
    shell:
        "echo started >> train-starts.txt; "
        "echo $SLURM_NTASKS $SLURM_STEP_NUM_TASKS $CUDA_VISIBLE_DEVICES > {{output}}"

# Fails on its first attempt (no marker yet), succeeds on the retry.
rule flaky:
    output: "flaky.txt"
    shell:
        "if [ ! -e first-attempt-failed ]; then touch first-attempt-failed; exit 3; fi; "
        "echo ok > {{output}}"
"""


@pytest.fixture(scope="module")
def mechanics(cluster, profile: dict, tmp_path_factory: pytest.TempPathFactory):
    """A small workflow through the profile: a CPU, a GPU, a 4-GPU training and a flaky rule."""
    work = tmp_path_factory.mktemp("slurm-mechanics")
    shutil.copytree(REPO / "profiles", work / "profiles")
    # an ungrouped model rule: a grouped rule runs as a job named after its group
    gpu_rule = "blend_generate"
    assert gpu_rule not in profile["groups"]
    train_rule = "train_lora"
    (work / "Snakefile").write_text(
        MECHANICS_SNAKEFILE.format(gpu_rule=gpu_rule, train_rule=train_rule, train_gpus=4)
    )
    run = run_through_slurm(work, timeout=600)
    assert run.returncode == 0, run.log[-6000:]
    return run, gpu_rule, train_rule


@pytest.mark.slurm
def test_small_workflow_routing(mechanics) -> None:
    run, gpu_rule, _ = mechanics
    (cpu_job,) = run.jobs_of("cpu_step")
    assert cpu_job["Partition"] == "cpu" and gpu_request(cpu_job) == ""
    (gpu_job,) = run.jobs_of(gpu_rule)
    assert gpu_job["Partition"] == "gpu"
    assert gpu_request(gpu_job) == "gres:gpu:h200:1"
    assert gpu_job["NumCPUs"] == "8", gpu_job  # the profile's CPUs per GPU
    assert len((run.workdir / "gpu.txt").read_text().split(",")) == 1


@pytest.mark.slurm
def test_multi_gpu_job_runs_one_process_group(mechanics) -> None:
    run, _, train_rule = mechanics
    (job,) = run.jobs_of(train_rule)
    assert job["Partition"] == "gpu"
    assert gpu_request(job) == "gres:gpu:h200:4"
    assert job["NumNodes"] == "1" and job["NumTasks"] == "1", job
    assert job["NumCPUs"] == "32", job  # CPUs and memory grow with the GPU count
    (call,) = run.sbatch_calls(train_rule)
    assert "--ntasks-per-gpu" not in call and "--gpus=h200:4" in call, call
    assert "--cpus-per-gpu=8" in call and "--mem-per-cpu 8000" in call, call
    # The rule's command ran once, as one task that sees all four GPUs.
    assert (run.workdir / "train-starts.txt").read_text().splitlines() == ["started"]
    ntasks, step_tasks, devices = (run.workdir / "train.txt").read_text().split()
    assert (ntasks, step_tasks) == ("1", "1")
    assert len(set(devices.split(","))) == 4, devices


@pytest.mark.slurm
def test_failed_job_is_retried(mechanics) -> None:
    run, _, _ = mechanics
    jobs = run.jobs_of("flaky")
    assert [j["JobState"] for j in jobs] == ["FAILED", "COMPLETED"], jobs
    assert jobs[0]["ExitCode"] == "1:0", jobs[0]  # srun's exit status for the failed step
    # The retry asked for more memory and time (attempt 2 in the profile's expressions).
    first, second = run.sbatch_calls("flaky")
    mem = [int(re.search(r"--mem (\d+)", c).group(1)) for c in (first, second)]
    assert mem[1] == 2 * mem[0], (first, second)
    assert (run.workdir / "flaky.txt").read_text().strip() == "ok"
    for job in jobs:
        log = run.workdir / ".snakemake" / "slurm_logs" / "rule_flaky" / f"{job['JobId']}.log"
        assert log.is_file(), log


# ---------------------------------------------------------------- the demo through SLURM


@pytest.fixture(scope="session", params=list(STACKS))
def slurm_demo(
    request: pytest.FixtureRequest, cluster, builtin_models: dict[str, Path], tmp_path_factory
) -> SlurmRun:
    """The demo workflow through SLURM in a fresh copy, reusing the already built tiny models,
    once per profile stack (production; with the small-jobs overlay)."""
    stack = request.param
    work = copy_workflow(tmp_path_factory.mktemp(f"slurm-demo-{stack}"))
    models = next(iter(builtin_models.values())).parent
    shutil.copytree(models, work / "results" / "models")
    run = run_through_slurm(work, timeout=3000, stack=stack)
    assert run.returncode == 0, run.log[-8000:]
    run.stack = stack
    print(f"\ndemo through SLURM ({stack}): {run.wall_s:.0f} s wall, {len(run.jobs)} SLURM jobs")
    return run


def stack_profile(stack: str, profile: dict, small_overlay: dict) -> dict:
    """The rendered profile of a stack (a later profile replaces whole top-level keys)."""
    return {**profile, **small_overlay} if stack == "small" else profile


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_rules_ran_where_the_workflow_says(
    slurm_demo: SlurmRun, local_rules: set[str], profile: dict, small_overlay: dict
) -> None:
    """localrules ran in the Snakemake process; every other job in a SLURM job: alone, or with
    other jobs of its group (the stack's groups) in one SLURM job."""
    groups = stack_profile(slurm_demo.stack, profile, small_overlay)["groups"]
    stats = slurm_demo.job_stats()
    ran_local = set(re.findall(r"^localrule (\S+):$", slurm_demo.log, flags=re.M))
    assert ran_local == {r for r in stats if r in local_rules}, ran_local
    completed = [j for j in slurm_demo.jobs if j["JobState"] == "COMPLETED"]
    assert len(completed) == len(slurm_demo.jobs), [j["JobState"] for j in slurm_demo.jobs]
    members = {j["JobId"]: slurm_demo.members(j["JobId"]) for j in completed}
    ran = Counter(r for rules in members.values() for r in rules)
    assert ran == Counter({r: n for r, n in stats.items() if r not in local_rules})
    for jobid, rules in members.items():
        if slurm_demo.group_of(jobid) is None:
            assert len(rules) == 1 and rules[0] not in groups, (jobid, rules)
        else:
            assert all(r in groups for r in rules), (jobid, rules)
    # one chain, one job: the consensus questions (both stacks) run in one SLURM job
    (chain,) = [rules for rules in members.values() if "write_paragraphs" in rules]
    assert "generate_questions" in chain, chain
    # fewer SLURM jobs than non-local Snakemake jobs: the groups saved submissions
    assert len(completed) < ran.total()
    for job in slurm_demo.jobs:
        log = slurm_demo.job_log(job["JobId"])
        # the plugin writes .snakemake/slurm_logs/{rule,group}_<name>[/<wildcards>]/<jobid>.log
        rel = log.relative_to(slurm_demo.workdir / ".snakemake" / "slurm_logs")
        assert log.is_file() and rel.parts[0] in (f"rule_{job['rule']}", f"group_{job['rule']}")
        assert job["JobId"] == log.stem


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_gpu_rules_went_to_gpu_partition(
    slurm_demo: SlurmRun, rule_resources: dict[str, list[str]]
) -> None:
    gpu_rules = {r for r, keys in rule_resources.items() if "gpu" in keys}
    members = {j["JobId"]: set(slurm_demo.members(j["JobId"])) for j in slurm_demo.jobs}
    assert set().union(*members.values()) & gpu_rules, "the demo ran no GPU rule"
    for job in slurm_demo.jobs:
        rules = members[job["JobId"]]
        if rules & gpu_rules:
            assert rules <= gpu_rules, job  # no group mixes GPU and CPU rules
            assert job["Partition"] == "gpu", job
            assert gpu_request(job) == "gres:gpu:h200:1" or "train_lora" in rules, job
            assert re.fullmatch(r"gres:gpu:h200:\d+", gpu_request(job)), job
            assert job["NumTasks"] == "1", job
        else:
            assert job["Partition"] == "cpu", job
            assert gpu_request(job) == "", job


def minutes(limit: str) -> int:
    """SLURM's TimeLimit ([days-]hours:minutes:seconds) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, sec = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (1 if sec else 0)


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_small_jobs_packed_on_one_gpu(
    slurm_demo: SlurmRun, profile: dict, small_overlay: dict
) -> None:
    """With the small-jobs overlay, each evaluated model's BLEnD, lm-eval and survey jobs ran
    as one SLURM job and its judge jobs as another; a packed job asked one GPU and the summed
    runtime of its members (30 min each)."""
    if slurm_demo.stack != "small":
        pytest.skip("the packing of the small-jobs overlay (this is the production stack)")
    blend_dir = slurm_demo.workdir / "results/evaluate/blend"
    # the eval models' folders (not engines/, the per-engine answer tables)
    evaluated = sorted(p.parent.name for p in blend_dir.glob("*/answers"))
    assert {"tiny-chat", "tiny-chat-full"} <= set(evaluated), evaluated
    groups = {j["JobId"]: slurm_demo.group_of(j["JobId"]) or "" for j in slurm_demo.jobs}
    for model in evaluated:
        for group in (f"evaluate_{model}_", f"judge_{model}_"):
            jobs = [i for i, g in groups.items() if g.startswith(group)]
            assert len(jobs) == 1, (group, groups)
        (evaluate,) = [i for i, g in groups.items() if g.startswith(f"evaluate_{model}_")]
        rules = set(slurm_demo.members(evaluate))
        # one BLEnD engine per base model, packed with the group named after it (its first
        # eval model: the base)
        blend = {"blend_generate"} if model == "tiny-chat" else set()
        assert rules == blend | {"lm_eval", "wvs_survey"}, (model, rules)
    packed = repacked_rules(profile, small_overlay)
    for job in slurm_demo.jobs:
        rules = slurm_demo.members(job["JobId"])
        if groups[job["JobId"]] and set(rules) <= packed:
            assert gpu_request(job) == "gres:gpu:h200:1", job
            assert minutes(job["TimeLimit"]) == 30 * len(rules), (rules, job["TimeLimit"])


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_jobs_ran_offline_and_localrules_online(
    slurm_demo: SlurmRun, local_rules: set[str]
) -> None:
    """With the network cut off (a hub endpoint that refuses connections, an empty cache) the
    demo ran; every cluster job's scripts ran with the hub libraries offline (set by the workflow
    in the job, not inherited: Snakemake itself was not offline), every localrule online."""
    logs = slurm_demo.workdir / "results" / "logs"
    stats = slurm_demo.job_stats()
    remote = {r for j in slurm_demo.jobs for r in slurm_demo.members(j["JobId"])}
    checked = {"offline": 0, "online": 0}
    for rule in stats:
        rule_logs = sorted((logs / rule).rglob("*.log")) if (logs / rule).is_dir() else []
        for log in rule_logs:
            text = log.read_text()
            if rule in remote:
                assert "hub access: offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE)" in text, log
                checked["offline"] += 1
            elif rule in local_rules:
                assert "hub access: online" in text, log
                checked["online"] += 1
    assert checked["offline"] >= 10 and checked["online"] >= 10, checked


# What "equal results" means: every table (Parquet), JSON and JSONL file and every text table
# (TSV/CSV) that both runs wrote under results/ has the same content. Not compared: logs and
# benchmarks (times, hosts), figures and the HTML report (metadata, timestamps), and binary model
# or adapter directories (models are copied; what adapters do shows in the tables downstream).
SKIP_DIRS = {"logs", "benchmarks", "models"}
COMPARED = (".parquet", ".json", ".jsonl", ".tsv", ".csv")


def compared_files(results: Path) -> set[Path]:
    out = set()
    for path in results.rglob("*"):
        rel = path.relative_to(results)
        if not path.is_file() or rel.parts[0] in SKIP_DIRS or path.suffix not in COMPARED:
            continue
        if any(p in ("adapter", "run") or p.startswith("checkpoint") for p in rel.parts[:-1]):
            continue
        out.add(rel)
    return out


def assert_same_json(a: object, b: object, where: str) -> None:
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (
            math.isnan(a) and math.isnan(b)
        ), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_json(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_results_equal_local_run(slurm_demo: SlurmRun, demo_run: Path) -> None:
    local, remote = demo_run / "results", slurm_demo.workdir / "results"
    files = compared_files(local)
    assert files, "the local demo run wrote no tables"
    assert compared_files(remote) == files
    for rel in sorted(files):
        a, b = local / rel, remote / rel
        if rel.suffix == ".parquet":
            assert_frame_equal(
                pl.read_parquet(a), pl.read_parquet(b), check_exact=False, rel_tol=1e-9
            )
        elif rel.suffix == ".json":
            assert_same_json(json.loads(a.read_text()), json.loads(b.read_text()), str(rel))
        elif rel.suffix == ".jsonl":
            la, lb = a.read_text().splitlines(), b.read_text().splitlines()
            assert len(la) == len(lb), rel
            for i, (x, y) in enumerate(zip(la, lb, strict=True)):
                assert_same_json(json.loads(x), json.loads(y), f"{rel}:{i + 1}")
        else:
            assert a.read_text() == b.read_text(), rel
