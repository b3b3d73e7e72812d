//! Slurm submission: a job's shape ([`JobShape`]) rendered into the batch script of `slurm/isoclr.sbatch`,
//! and `sbatch` to submit it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The batch script template; `{{NAME}}` placeholders are filled by [`render`].
const TEMPLATE: &str = include_str!("../../slurm/isoclr.sbatch");

/// Everything the batch script needs.
#[derive(Debug, Clone)]
pub struct JobShape {
    /// Job name in the queue.
    pub job_name: String,
    /// Nodes to allocate.
    pub nodes: u32,
    /// GPUs per node (0: CPU workers).
    pub gpus_per_node: u32,
    /// Worker processes per node: one per GPU, or the CPU worker count.
    pub workers_per_node: u32,
    /// CPUs for each worker.
    pub cpus_per_task: u32,
    /// Time limit, `[D-]HH:MM:SS` or minutes.
    pub time: String,
    /// Partition, if not the default.
    pub partition: Option<String>,
    /// Account to charge, if not the default.
    pub account: Option<String>,
    /// Seconds before the time limit at which SIGUSR2 asks the job to checkpoint and requeue.
    pub signal_lead_s: u32,
    /// Extra `#SBATCH` options, passed through verbatim (e.g. `--qos=high`).
    pub extra: Vec<String>,
    /// The isoclr binary the job runs (absolute).
    pub isoclr: PathBuf,
    /// The job's output directory (absolute); it holds `config.toml` and `token`.
    pub out: PathBuf,
}

/// A value for an `#SBATCH` line, which Slurm does not unquote: refuse blanks and quotes.
fn sbatch_value<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        bail!("{what} {value:?} cannot go on an #SBATCH line: no spaces, quotes or backslashes");
    }
    Ok(value)
}

/// `path` as UTF-8 without characters that an `#SBATCH` line or the script could not carry.
fn path_value(what: &str, path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{what} {} is not valid UTF-8", path.display()))?;
    Ok(sbatch_value(what, text)?.to_owned())
}

/// The batch script of `shape`.
///
/// Errors: a value that cannot be written into the script (spaces or quotes in a path or option), a shape
/// with no nodes or workers.
pub fn render(shape: &JobShape) -> Result<String> {
    if shape.nodes == 0 || shape.workers_per_node == 0 || shape.cpus_per_task == 0 {
        bail!("a job needs at least one node, one worker per node and one CPU per worker");
    }
    let optional = |option: &str, value: &Option<String>| -> Result<String> {
        Ok(match value {
            Some(v) => format!("#SBATCH --{option}={}\n", sbatch_value(option, v)?),
            None => String::new(),
        })
    };
    let mut extra = String::new();
    for line in &shape.extra {
        let line = line.trim();
        if !line.starts_with('-') || line.contains('\n') {
            bail!("--sbatch {line:?}: give one sbatch option per flag, e.g. --sbatch=--qos=high");
        }
        writeln!(extra, "#SBATCH {line}")?;
    }
    let values = [
        ("JOB_NAME", sbatch_value("--job-name", &shape.job_name)?.to_owned()),
        ("NODES", shape.nodes.to_string()),
        ("WORKERS_PER_NODE", shape.workers_per_node.to_string()),
        ("CPUS_PER_TASK", shape.cpus_per_task.to_string()),
        (
            "GPU_LINE",
            if shape.gpus_per_node > 0 {
                format!("#SBATCH --gpus-per-node={}\n", shape.gpus_per_node)
            } else {
                String::new()
            },
        ),
        (
            "SRUN_GPU_OPTIONS",
            if shape.gpus_per_node > 0 {
                "--gpus-per-task=1 ".to_owned()
            } else {
                String::new()
            },
        ),
        ("TIME", sbatch_value("--time", &shape.time)?.to_owned()),
        ("PARTITION_LINE", optional("partition", &shape.partition)?),
        ("ACCOUNT_LINE", optional("account", &shape.account)?),
        ("SIGNAL_LEAD", shape.signal_lead_s.to_string()),
        ("EXTRA_LINES", extra),
        ("ISOCLR", path_value("the isoclr binary", &shape.isoclr)?),
        ("OUT", path_value("--out", &shape.out)?),
    ];
    let mut script = TEMPLATE.to_owned();
    for (name, value) in values {
        script = script.replace(&format!("{{{{{name}}}}}"), &value);
    }
    if let Some(at) = script.find("{{") {
        bail!(
            "slurm/isoclr.sbatch has an unknown placeholder near {:?}",
            &script[at..(at + 30).min(script.len())]
        );
    }
    Ok(script)
}

/// Whether `sbatch` can be run here.
pub fn available() -> bool {
    Command::new("sbatch")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Submits `script` (already written to `path`) and returns the job id.
pub fn submit(path: &Path) -> Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(path)
        .output()
        .context("cannot run sbatch")?;
    if !output.status.success() {
        bail!(
            "sbatch refused {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // --parsable prints "jobid" or "jobid;cluster".
    let id = stdout.trim().split(';').next().unwrap_or_default();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id: {stdout:?}");
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> JobShape {
        JobShape {
            job_name: "isoclr".into(),
            nodes: 4,
            gpus_per_node: 8,
            workers_per_node: 8,
            cpus_per_task: 8,
            time: "24:00:00".into(),
            partition: Some("gpu".into()),
            account: None,
            signal_lead_s: 180,
            extra: vec!["--qos=high".into()],
            isoclr: "/opt/isoclr/bin/isoclr".into(),
            out: "/scratch/runs/a".into(),
        }
    }

    #[test]
    fn a_four_node_gpu_job_asks_for_what_it_needs() {
        let script = render(&shape()).unwrap();
        for line in [
            "#SBATCH --nodes=4",
            "#SBATCH --ntasks-per-node=8",
            "#SBATCH --gpus-per-node=8",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --time=24:00:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --requeue",
            "#SBATCH --signal=B:USR2@180",
            "#SBATCH --output=/scratch/runs/a/slurm-%j.out",
            "#SBATCH --qos=high",
        ] {
            assert!(script.lines().any(|l| l == line), "missing {line:?} in\n{script}");
        }
        assert!(!script.contains("--account"), "no account line without --account");
        assert!(script.contains("--gpus-per-task=1"), "one GPU per worker");
        assert!(!script.contains("{{"));
        // Every #SBATCH line comes before the first command, or sbatch ignores it.
        let first_command = script
            .lines()
            .position(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap();
        assert!(script.lines().skip(first_command).all(|l| !l.starts_with("#SBATCH")));
    }

    #[test]
    fn values_that_the_script_cannot_carry_are_refused() {
        let mut s = shape();
        s.out = "/scratch/my runs".into();
        assert!(render(&s).unwrap_err().to_string().contains("--out"));
        let mut s = shape();
        s.extra = vec!["qos=high".into()];
        assert!(render(&s).unwrap_err().to_string().contains("--sbatch"));
        let mut s = shape();
        s.nodes = 0;
        assert!(render(&s).is_err());
        let cpu = JobShape {
            gpus_per_node: 0,
            workers_per_node: 2,
            ..shape()
        };
        let script = render(&cpu).unwrap();
        assert!(!script.contains("gpus-per"), "{script}");
    }
}
