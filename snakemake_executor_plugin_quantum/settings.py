"""The plugin's settings: ``--quantum-*`` flags, ``SNAKEMAKE_QUANTUM_*`` variables, profile keys.

Snakemake reads one ``common_settings`` per plugin, but our shape depends on where
classical jobs run. On one machine we are a *local* executor (``--cores``, jobs in
threads of this process, no per-job Snakemake start-up); with ``classical: slurm`` we
are a *remote* one (``--jobs N``, groups, default resources). Snakemake builds the
settings object before it reads ``common_settings.local_exec`` (CLI and API alike), so
the settings record the mode and ``common_settings`` answers from it.
"""


from dataclasses import dataclass, field

from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from .snakemake_compat import mode_aware_common_settings

CLASSICAL_MODES = ("local", "slurm")
QPU_MODES = ("gres", "spank")
_mode = {"classical": "local"}


common_settings = mode_aware_common_settings(CommonSettings, lambda: _mode["classical"] == "slurm")(
    non_local_exec=False,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    # Slurm mode: the first status check comes from our own (short) settings.
    init_seconds_before_status_checks=0,
)


def _help(text: str, **extra: object) -> dict:
    # An explicit argparse type: Snakemake would otherwise use the (string) annotation.
    return {"help": text, "type": str, **extra}


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    config: str | None = field(
        default=None,
        metadata=_help("Resource config: a spank_qrmi qrmi_config.json, or the same structure in YAML. "
                       "Default: the embedded local simulators (aer, pulser, vqpu, vqpu_pulser).", env_var=True),
    )
    default_qpu: str | None = field(
        default=None, metadata=_help("Resource for rules with qpu=N but no qpu_name (default: the config's only resource).", env_var=True)
    )
    default_vqpu: str | None = field(
        default=None,
        metadata=_help("vQPU for rules with vqpu=1 but no vqpu_name (default: the config's only vqpu resource, else 'vqpu').", env_var=True),
    )
    classical: str = field(
        default="local",
        metadata=_help("Where jobs run: 'local' (this machine, like --executor local) or 'slurm' "
                       "(sbatch through snakemake-executor-plugin-slurm; use --jobs N).", choices=list(CLASSICAL_MODES), env_var=True),
    )
    gpu_slots: str | None = field(
        default=None,
        metadata=_help("GPUs that jobs with gpu=N may use: a count ('4') or ids ('0,1,3'). "
                       "Default: detected with nvidia-smi. Each running job gets its own CUDA_VISIBLE_DEVICES.", env_var=True),
    )
    lease_dir: str | None = field(
        default=None,
        metadata=_help("Directory of lane lease files that cap per-resource concurrency across Snakemake runs "
                       "(default ~/.cache/snakemake-quantum/leases; must be shared by the runs it should cap).", env_var=True),
    )
    qpu_timeout: int = field(
        default=3600,
        metadata=_help("Seconds a quantum job's tasks may take when its rule sets no runtime; jobs see it as "
                       "{name}_QRMI_JOB_TIMEOUT_SECONDS, as spank_qrmi derives it from the Slurm time limit.", type=int),
    )
    acquire_timeout: int = field(
        default=120, metadata=_help("Seconds a resource's acquire may take before its jobs fail (a hung QPU endpoint).", type=int)
    )
    vqpu_idle_timeout: int = field(
        default=300, metadata=_help("Seconds a vQPU sidecar may sit idle before it stops itself (0: never).", type=int)
    )
    vqpu_walltime: int = field(
        default=0, metadata=_help("Seconds a vQPU sidecar may run in all (0: unlimited).", type=int)
    )
    vqpu_start_timeout: int = field(
        default=180, metadata=_help("Seconds to wait for a vQPU to become ready (its event file).", type=int)
    )
    vqpu_event_dir: str | None = field(
        default=None, metadata=_help("Directory for vQPU event files (default .snakemake/quantum/vqpu in the working directory).")
    )
    # ---- Slurm (classical: slurm). Mirrors of the slurm plugin's settings we need.
    slurm_qpu_mode: str = field(
        default="gres",
        metadata=_help("How QPU jobs ask Slurm for their resources: 'gres' (--gres=qpu:N) or 'spank' "
                       "(--qpu=<names>, for sites with the spank_qrmi plugin).", choices=list(QPU_MODES)),
    )
    slurm_status_command: str | None = field(
        default=None, metadata=_help("Slurm status command: 'sacct' or 'squeue' (default: sacct if accounting works, else squeue).")
    )
    slurm_init_seconds: int = field(
        default=1, metadata=_help("Seconds before the first Slurm status check.", type=int)
    )
    slurm_status_interval: int = field(
        default=2, metadata=_help("Seconds between Slurm status checks.", type=int)
    )
    slurm_max_status_interval: int = field(
        default=60,
        metadata=_help("Longest wait between Slurm status checks: while nothing finishes the wait doubles from "
                       "--quantum-slurm-status-interval up to this.", type=int, env_var=True),
    )
    slurm_logdir: str | None = field(
        default=None, metadata=_help("Directory for Slurm job logs (default .snakemake/slurm_logs).")
    )
    slurm_vqpu_partition: str | None = field(
        default=None, metadata=_help("Partition for vQPU sidecar jobs whose resource sets no slurm.partition (default: the cluster's default).")
    )
    qrun_subprocess: bool = field(
        default=False,
        metadata={"help": "Run every qrun command as its own process. By default a job whose whole command is one "
                          "plain `qrun` call on a vQPU sends its request from the executor instead (same output, "
                          "~100 ms less per job)."},
    )
    no_metrics: bool = field(
        default=False,
        metadata={"help": "Do not record per-task metrics. By default every quantum task of a run is a line in "
                          ".snakemake/quantum/metrics/<run>.jsonl, summarised at the end of the run (docs/metrics.md)."},
    )
    spawn_run_jobs: bool = field(
        default=False,
        metadata={"help": "Run each run: job in a new Snakemake process, as --executor local does (about 1.3 s "
                          "per job). By default run: jobs are forked from a copy of the running Snakemake that "
                          "already holds the workflow (and qiskit, when they use quantum resources)."},
    )
    vqpu_batch: int = field(
        default=32,
        metadata=_help("Most tasks of plain qrun jobs sent to a vQPU in one request. Tasks that wait for a busy "
                       "vQPU go together when it frees up; 1 sends each alone.", type=int),
    )
    slurm_keep_logs: bool = field(
        default=False, metadata={"help": "Keep the Slurm logs of successful jobs (the slurm plugin deletes them by default)."}
    )

    def __post_init__(self) -> None:
        if self.classical not in CLASSICAL_MODES:
            raise ValueError(f"--quantum-classical must be one of {', '.join(CLASSICAL_MODES)}, got {self.classical!r}")
        if self.slurm_qpu_mode not in QPU_MODES:
            raise ValueError(f"--quantum-slurm-qpu-mode must be one of {', '.join(QPU_MODES)}, got {self.slurm_qpu_mode!r}")
        _mode["classical"] = self.classical
