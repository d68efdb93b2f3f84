//! The four tools, each doing the work of `bench/remote/` on every host of a lab: how each
//! is installed, prepared (inventory, config) and run once.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::process::Command;

use super::child::{self, tail};
use super::lab::{Hosts, Lab, remote_command};

/// The Foundry leg's command line after `foundry`; `{config}` is the lab's stack config
/// and `{parallel}` the number of hosts.
pub const FOUNDRY_CONFIGURE: &[&str] = &[
    "--config",
    "{config}",
    "host",
    "configure",
    "--all",
    "--parallel",
    "{parallel}",
    "--output",
    "json",
];

/// What is installed into the venv, pinned so that figures compare across runs.
pub const ANSIBLE_CORE: &str = "ansible-core==2.19.14";
pub const PYINFRA: &str = "pyinfra==3.10.0";

const ANSIBLE_PLAYBOOK: &str = include_str!("../../remote/configure.yml");
const PYINFRA_DEPLOY: &str = include_str!("../../remote/deploy.py");
const CONFIGURE_SH: &str = include_str!("../../remote/configure.sh");

/// One run of a tool over every host.
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Making the venv and installing into it.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// `--version`, `--help`, `ssh -O exit`.
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Ansible's SSH connections stay up between tasks of one run.
const CONTROL_PERSIST: &str = "120s";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Foundry,
    Ansible,
    Pyinfra,
    Ssh,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Foundry, Tool::Ansible, Tool::Pyinfra, Tool::Ssh];

    /// The name `--tools` takes.
    pub fn arg(self) -> &'static str {
        match self {
            Tool::Foundry => "foundry",
            Tool::Ansible => "ansible",
            Tool::Pyinfra => "pyinfra",
            Tool::Ssh => "ssh",
        }
    }

    /// The prefix of its figures.
    pub fn figure(self) -> &'static str {
        match self {
            Tool::Ssh => "ssh_limit",
            other => other.arg(),
        }
    }

    pub fn parse(name: &str) -> Result<Tool> {
        Tool::ALL
            .into_iter()
            .find(|t| t.arg() == name)
            .with_context(|| {
                format!(
                    "--tools: unknown tool `{name}`; the tools are foundry, ansible, pyinfra, ssh"
                )
            })
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arg())
    }
}

/// The venv holding ansible-core and pyinfra.
pub struct Python {
    pub venv: PathBuf,
}

impl Python {
    fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }

    /// The venv at `venv` with the pinned versions: reused when it has them, made or
    /// completed with pip (from PyPI) when not. Returns (ansible-core, pyinfra) versions.
    pub async fn ensure(venv: PathBuf, scratch: &Path) -> Result<(Python, String, String)> {
        let python = Python { venv };
        if let Ok(found) = python.versions(scratch).await
            && pinned(ANSIBLE_CORE) == found.0
            && pinned(PYINFRA) == found.1
        {
            eprintln!("  reusing {}", python.venv.display());
            return Ok((python, found.0, found.1));
        }
        eprintln!(
            "  installing {ANSIBLE_CORE} and {PYINFRA} into {}",
            python.venv.display()
        );
        if !python.bin("pip").is_file() {
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "venv"]).arg(&python.venv);
            child::run(cmd, "venv", scratch, INSTALL_TIMEOUT, None)
                .await?
                .ensure_success("python3 -m venv")?;
        }
        let mut cmd = Command::new(python.bin("pip"));
        cmd.args(["install", "--quiet", ANSIBLE_CORE, PYINFRA]);
        child::run(cmd, "pip-install", scratch, INSTALL_TIMEOUT, None)
            .await?
            .ensure_success("pip install")?;
        let (ansible, pyinfra) = python.versions(scratch).await?;
        Ok((python, ansible, pyinfra))
    }

    /// (ansible-core, pyinfra) as their `--version` print them.
    async fn versions(&self, scratch: &Path) -> Result<(String, String)> {
        let mut cmd = Command::new(self.bin("ansible-playbook"));
        cmd.arg("--version");
        let out = child::run(cmd, "ansible-version", scratch, SHORT_TIMEOUT, None).await?;
        out.ensure_success("ansible-playbook --version")?;
        // `ansible-playbook [core 2.19.14]`
        let ansible = out
            .stdout
            .lines()
            .next()
            .and_then(|l| l.split("[core ").nth(1))
            .map(|v| v.trim_end_matches(']').trim().to_string())
            .context("ansible-playbook --version: no `[core X]` on its first line")?;
        let mut cmd = Command::new(self.bin("pyinfra"));
        cmd.arg("--version");
        let out = child::run(cmd, "pyinfra-version", scratch, SHORT_TIMEOUT, None).await?;
        out.ensure_success("pyinfra --version")?;
        // `pyinfra: v3.10.0`
        let pyinfra = out
            .stdout
            .trim()
            .rsplit(' ')
            .next()
            .map(|v| v.trim_start_matches('v').to_string())
            .context("pyinfra --version printed nothing")?;
        Ok((ansible, pyinfra))
    }
}

fn pinned(requirement: &str) -> String {
    requirement
        .split_once("==")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// Why `foundry` cannot take part, if it cannot: its `host configure` is missing.
pub async fn foundry_missing(lab: &Lab, scratch: &Path) -> Result<Option<String>> {
    let mut cmd = lab.foundry();
    cmd.args(foundry_args(&lab.config_path(), 1)).arg("--help");
    let help = child::run(cmd, "foundry-help", scratch, SHORT_TIMEOUT, None).await?;
    if help.status.success() {
        return Ok(None);
    }
    Ok(Some(format!(
        "`foundry {}` is not available in this build: {}",
        foundry_args(Path::new("CONFIG"), 50).join(" "),
        tail(&help.stderr, 3).replace('\n', " ")
    )))
}

fn foundry_args(config: &Path, parallel: usize) -> Vec<String> {
    let config = config.display().to_string();
    let parallel = parallel.to_string();
    FOUNDRY_CONFIGURE
        .iter()
        .map(|a| {
            a.replace("{config}", &config)
                .replace("{parallel}", &parallel)
        })
        .collect()
}

/// A tool ready to run on a lab's hosts.
pub struct Prepared<'a> {
    tool: Tool,
    lab: &'a Lab,
    hosts: &'a Hosts,
    python: Option<&'a Python>,
    own_exe: PathBuf,
    /// Sockets of Ansible's SSH connections: short, as a socket path must be.
    control: Option<tempfile::TempDir>,
}

/// One timed run.
pub struct Timed {
    pub took: Duration,
    /// What the tool reported changing, when it says (notes only).
    pub changes: Option<usize>,
    /// Foundry's peak resident set, KiB.
    pub max_rss_kib: Option<u64>,
}

impl<'a> Prepared<'a> {
    /// Writes the tool's inventory, config and work files into the lab's directory.
    pub fn new(
        tool: Tool,
        lab: &'a Lab,
        hosts: &'a Hosts,
        python: Option<&'a Python>,
    ) -> Result<Prepared<'a>> {
        let own_exe = std::env::current_exe().context("finding this executable's path")?;
        let mut prepared = Prepared {
            tool,
            lab,
            hosts,
            python,
            own_exe,
            control: None,
        };
        match tool {
            Tool::Foundry => {}
            Tool::Ansible => prepared.write_ansible()?,
            Tool::Pyinfra => prepared.write_pyinfra()?,
            Tool::Ssh => write(&lab.dir.join("configure.sh"), CONFIGURE_SH)?,
        }
        Ok(prepared)
    }

    fn python(&self) -> Result<&Python> {
        self.python
            .with_context(|| format!("{}: the Python venv was not set up", self.tool))
    }

    fn write_ansible(&mut self) -> Result<()> {
        let dir = &self.lab.dir;
        let mut hosts = serde_json::Map::new();
        for host in &self.hosts.hosts {
            hosts.insert(
                host.name.clone(),
                serde_json::json!({
                    "ansible_host": host.address,
                    "ansible_port": host.port,
                    "ansible_user": host.user,
                    "ansible_ssh_private_key_file": host.key,
                    "foundry_name": host.name,
                    "foundry_key": host.public_key,
                }),
            );
        }
        let inventory = serde_json::json!({ "all": { "hosts": hosts } });
        write(&dir.join("inventory.json"), &format!("{inventory:#}\n"))?;
        write(&dir.join("configure.yml"), ANSIBLE_PLAYBOOK)?;
        let control = tempfile::Builder::new()
            .prefix("fb-cp-")
            .tempdir()
            .context("making a directory for Ansible's SSH control sockets")?;
        let forks = self.hosts.hosts.len();
        let cfg = format!(
            "[defaults]\n\
             inventory = {inventory}\n\
             forks = {forks}\n\
             host_key_checking = True\n\
             interpreter_python = /usr/bin/python3\n\
             retry_files_enabled = False\n\
             nocolor = True\n\
             \n\
             [ssh_connection]\n\
             pipelining = True\n\
             ssh_args = -F /dev/null -o ControlMaster=auto -o ControlPersist={CONTROL_PERSIST} \
             -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes \
             -o IdentityAgent=none\n\
             control_path_dir = {control}\n",
            inventory = dir.join("inventory.json").display(),
            known = self.hosts.known_hosts.display(),
            control = control.path().display(),
        );
        write(&dir.join("ansible.cfg"), &cfg)?;
        self.control = Some(control);
        Ok(())
    }

    fn write_pyinfra(&self) -> Result<()> {
        let dir = &self.lab.dir;
        let mut inventory = String::from("# Written by foundry-bench for one lab.\nhosts = [\n");
        for host in &self.hosts.hosts {
            let data = serde_json::json!({
                "ssh_hostname": host.address,
                "ssh_port": host.port,
                "ssh_user": host.user,
                "ssh_key": host.key,
                "ssh_known_hosts_file": self.hosts.known_hosts,
                "ssh_strict_host_key_checking": "yes",
                "foundry_name": host.name,
                "foundry_key": host.public_key,
            });
            // Strings and numbers only: the JSON is a Python literal as it stands.
            let name = serde_json::Value::from(host.name.as_str());
            inventory.push_str(&format!("    ({name}, {data}),\n"));
        }
        inventory.push_str("]\n");
        write(&dir.join("inventory.py"), &inventory)?;
        write(&dir.join("deploy.py"), PYINFRA_DEPLOY)
    }

    /// One run over every host; `label` names its output files.
    pub async fn run(&self, label: &str) -> Result<Timed> {
        match self.tool {
            Tool::Foundry => self.run_foundry(label).await,
            Tool::Ansible => self.run_ansible(label).await,
            Tool::Pyinfra => self.run_pyinfra(label).await,
            Tool::Ssh => self.run_ssh(label).await,
        }
    }

    async fn run_foundry(&self, label: &str) -> Result<Timed> {
        let dir = &self.lab.dir;
        let rss = dir.join(format!("foundry-{label}.maxrss"));
        // Through this executable's `__rusage` mode: the peak of foundry alone.
        let mut wrapper = Command::new(&self.own_exe);
        wrapper.arg("__rusage").arg(&rss).arg(self.lab.binary());
        let mut cmd = self.lab.with_home(wrapper);
        cmd.args(foundry_args(&self.hosts.config, self.hosts.hosts.len()));
        let run = child::run(cmd, &format!("foundry-{label}"), dir, RUN_TIMEOUT, None).await?;
        run.ensure_success(&format!("foundry {}", FOUNDRY_CONFIGURE.join(" ")))?;
        let max_rss_kib = fs::read_to_string(&rss)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        Ok(Timed {
            took: run.took,
            changes: None,
            max_rss_kib,
        })
    }

    async fn run_ansible(&self, label: &str) -> Result<Timed> {
        let dir = &self.lab.dir;
        let mut cmd = Command::new(self.python()?.bin("ansible-playbook"));
        cmd.arg(dir.join("configure.yml"))
            .current_dir(dir)
            .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
            .env("ANSIBLE_HOME", dir.join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
            .env_remove("ANSIBLE_INVENTORY");
        let run = child::run(cmd, &format!("ansible-{label}"), dir, RUN_TIMEOUT, None).await;
        // Each run starts without connections, as the other tools do.
        self.close_ansible_connections().await;
        let run = run?;
        run.ensure_success("ansible-playbook")?;
        let changes = recap_changes(&run.stdout, self.hosts.hosts.len())?;
        Ok(Timed {
            took: run.took,
            changes: Some(changes),
            max_rss_kib: None,
        })
    }

    /// Ends the ControlPersist masters Ansible left (they detach from its process group).
    async fn close_ansible_connections(&self) {
        let Some(control) = &self.control else { return };
        let Ok(entries) = fs::read_dir(control.path()) else {
            return;
        };
        for (i, entry) in entries.flatten().enumerate() {
            let mut cmd = Command::new("ssh");
            cmd.args(["-F", "/dev/null", "-o"])
                .arg(format!("ControlPath={}", entry.path().display()))
                .args(["-O", "exit", "control-master"]);
            let name = format!("ansible-close-{i}");
            if let Err(e) = child::run(cmd, &name, &self.lab.dir, SHORT_TIMEOUT, None).await {
                eprintln!("  warning: closing an Ansible connection: {e:#}");
            }
        }
    }

    async fn run_pyinfra(&self, label: &str) -> Result<Timed> {
        let dir = &self.lab.dir;
        let mut cmd = Command::new(self.python()?.bin("pyinfra"));
        cmd.args(["inventory.py", "deploy.py", "--parallel"])
            .arg(self.hosts.hosts.len().to_string())
            .arg("-y")
            .current_dir(dir);
        let run = child::run(cmd, &format!("pyinfra-{label}"), dir, RUN_TIMEOUT, None).await?;
        run.ensure_success("pyinfra")?;
        Ok(Timed {
            took: run.took,
            changes: None,
            max_rss_kib: None,
        })
    }

    /// One `ssh` per host, all at once, each piping configure.sh to `sudo sh -s`.
    async fn run_ssh(&self, label: &str) -> Result<Timed> {
        let dir = self.lab.dir.clone();
        let script = dir.join("configure.sh");
        let out = dir.join(format!("ssh-{label}"));
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut set = tokio::task::JoinSet::new();
        let start = std::time::Instant::now();
        for host in &self.hosts.hosts {
            let mut cmd = self.hosts.ssh(host, &host.user);
            cmd.arg(remote_command(&[
                "sudo",
                "sh",
                "-s",
                "--",
                &host.name,
                &host.public_key,
            ])?);
            let (name, out, script) = (host.name.clone(), out.clone(), script.clone());
            set.spawn(async move {
                let run = child::run(cmd, &name, &out, RUN_TIMEOUT, Some(&script)).await;
                (name, run)
            });
        }
        let mut failures = Vec::new();
        let mut changes = 0;
        while let Some(joined) = set.join_next().await {
            let (name, run) = joined.context("joining an ssh task")?;
            match run.and_then(|r| r.ensure_success(&format!("ssh {name}")).map(|()| r)) {
                Ok(r) => {
                    changes += r
                        .stdout
                        .lines()
                        .filter(|l| l.starts_with("changed:"))
                        .count()
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        let took = start.elapsed();
        if !failures.is_empty() {
            bail!(
                "{} of {} hosts failed:\n{}",
                failures.len(),
                self.hosts.hosts.len(),
                failures.join("\n")
            );
        }
        Ok(Timed {
            took,
            changes: Some(changes),
            max_rss_kib: None,
        })
    }
}

/// The sum of `changed=N` over the PLAY RECAP, checking every host is in it.
fn recap_changes(stdout: &str, hosts: usize) -> Result<usize> {
    let mut seen = 0;
    let mut changed = 0;
    let recap = stdout.split("PLAY RECAP").nth(1).unwrap_or("");
    for line in recap.lines() {
        let Some(field) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("changed="))
        else {
            continue;
        };
        seen += 1;
        changed += field.parse::<usize>().unwrap_or(0);
    }
    ensure!(
        seen == hosts,
        "ansible-playbook: its PLAY RECAP lists {seen} hosts, not {hosts}"
    );
    Ok(changed)
}

fn write(path: &Path, content: &str) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_foundry_command_line_fills_in_config_and_parallel() {
        let args = foundry_args(Path::new("/h/lab-x.yaml"), 50);
        assert_eq!(
            args.join(" "),
            "--config /h/lab-x.yaml host configure --all --parallel 50 --output json"
        );
    }

    #[test]
    fn ansible_recap_changes_are_summed_over_every_host() {
        let out = "TASK [x]\nchanged: [a]\n\nPLAY RECAP ****\n\
                   a : ok=7 changed=4 unreachable=0 failed=0\n\
                   b : ok=7 changed=0 unreachable=0 failed=0\n";
        assert_eq!(recap_changes(out, 2).ok(), Some(4));
        assert!(recap_changes(out, 3).is_err());
    }

    #[test]
    fn tools_parse_by_their_argument_name() {
        assert_eq!(Tool::parse("ssh").ok(), Some(Tool::Ssh));
        assert_eq!(Tool::Ssh.figure(), "ssh_limit");
        assert!(Tool::parse("chef").is_err());
    }
}
