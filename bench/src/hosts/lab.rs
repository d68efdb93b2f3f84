//! A lab of fresh hosts for one tool: `foundry lab up` in a home of its own, the hosts it
//! wrote, a known_hosts file from their host keys, the check that a tool's work really
//! happened, and `foundry lab down`.

use std::fmt::Write as _;
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::process::Command;

use super::child::{self, tail};

/// `lab up` of 50 hosts takes about a minute; building the image the first time, more.
const UP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const DOWN_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// One `ssh` that checks a host.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);
/// Subnets tried when another lab already uses the one picked.
const SUBNET_TRIES: usize = 8;
/// The script that checks a host, logged in as `foundry`.
const VERIFY_SH: &str = include_str!("../../remote/verify.sh");

/// One host as `lab up` wrote it, with the public key Foundry's user gets there.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub user: String,
    pub port: u16,
    /// The lab's private key, which logs in as `user` (and, once configured, `foundry`).
    pub key: PathBuf,
    /// The content of `<key>.pub`: K, the key that goes into foundry's authorized_keys.
    pub public_key: String,
}

/// A lab being made or removed by the `foundry` binary, in its own `FOUNDRY_HOME`.
pub struct Lab {
    foundry: PathBuf,
    pub name: String,
    pub home: PathBuf,
    /// Where this leg's files go (inventories, outputs).
    pub dir: PathBuf,
}

/// The lab's hosts once it is up.
pub struct Hosts {
    pub config: PathBuf,
    pub hosts: Vec<Host>,
    /// OpenSSH known_hosts with every host's key: strict host key checking for all tools.
    pub known_hosts: PathBuf,
}

fn random() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

impl Lab {
    /// A lab named `bench-<tool>-<random>` whose home and files are under `dir`.
    pub fn new(foundry: &Path, tool: &str, dir: PathBuf) -> Lab {
        Lab {
            foundry: foundry.to_path_buf(),
            name: format!("bench-{tool}-{:06x}", random() & 0xff_ffff),
            home: dir.join("home"),
            dir,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.join(format!("lab-{}.yaml", self.name))
    }

    /// `foundry` with this lab's home.
    pub fn foundry(&self) -> Command {
        self.with_home(Command::new(&self.foundry))
    }

    /// The `foundry` binary.
    pub fn binary(&self) -> &Path {
        &self.foundry
    }

    /// `cmd` with this lab's `FOUNDRY_HOME` and a plain environment for `foundry`.
    pub fn with_home(&self, mut cmd: Command) -> Command {
        cmd.env("FOUNDRY_HOME", &self.home)
            .env("NO_COLOR", "1")
            .env_remove("FOUNDRY_FAILPOINTS")
            .env_remove("FOUNDRY_LOG");
        cmd
    }

    /// `foundry lab up --hosts N` on a free 10.77.X.0/24. Call [`Lab::down`] afterwards
    /// whatever this returns: a failed `up` can leave containers behind.
    pub async fn up(&self, count: usize) -> Result<Hosts> {
        self.up_with(count, &[]).await
    }

    /// As [`Lab::up`], with more options of `lab up` (`--systemd`).
    pub async fn up_with(&self, count: usize, options: &[&str]) -> Result<Hosts> {
        fs::create_dir_all(&self.home)
            .with_context(|| format!("creating {}", self.home.display()))?;
        let count = count.to_string();
        let mut last = String::new();
        for attempt in 0..SUBNET_TRIES {
            let subnet = format!("10.77.{}.0/24", 1 + random() % 250);
            let mut cmd = self.foundry();
            cmd.args(["lab", "up", "--hosts", &count, "--name", &self.name])
                .args(["--subnet", &subnet])
                .args(options);
            let name = format!("lab-up-{attempt}");
            let up = child::run(cmd, &name, &self.dir, UP_TIMEOUT, None).await?;
            if up.status.success() {
                eprintln!(
                    "  lab {} up: {count} hosts on {subnet} in {:.1} s",
                    self.name,
                    up.took.as_secs_f64()
                );
                return self.hosts();
            }
            last = tail(&up.stderr, 10);
            if !last.contains("overlap") {
                break;
            }
            // Another lab holds that subnet: remove what was made, try another.
            self.down().await?;
        }
        bail!("`foundry lab up --name {}` failed:\n{last}", self.name)
    }

    /// `foundry lab down`: every container and the network of this lab.
    pub async fn down(&self) -> Result<()> {
        let mut cmd = self.foundry();
        cmd.args(["lab", "down", "--name", &self.name]);
        let down = child::run(cmd, "lab-down", &self.dir, DOWN_TIMEOUT, None).await?;
        down.ensure_success(&format!("`foundry lab down --name {}`", self.name))
    }

    fn hosts(&self) -> Result<Hosts> {
        let config = self.config_path();
        let stack = foundry_workflows::config::load(&config)
            .with_context(|| format!("reading the lab's hosts from {}", config.display()))?;
        let mut hosts = Vec::with_capacity(stack.hosts.len());
        let mut known = String::new();
        for entry in stack.hosts {
            let Some(foundry_workflows::config::KeyField::File(key)) = entry.key else {
                bail!("{}: host {} has no key file", config.display(), entry.name);
            };
            let Some(host_key) = entry.host_key else {
                bail!("{}: host {} has no host_key", config.display(), entry.name);
            };
            let public = PathBuf::from(format!("{}.pub", key.display()));
            let public_key = fs::read_to_string(&public)
                .with_context(|| format!("reading {}", public.display()))?
                .trim()
                .to_string();
            ensure!(
                !public_key.is_empty() && !public_key.contains('\n'),
                "{}: expected one public key line",
                public.display()
            );
            let pattern = if entry.port == 22 {
                entry.address.clone()
            } else {
                format!("[{}]:{}", entry.address, entry.port)
            };
            let _ = writeln!(known, "{pattern} {host_key}");
            hosts.push(Host {
                name: entry.name,
                address: entry.address,
                user: entry.user,
                port: entry.port,
                key,
                public_key,
            });
        }
        ensure!(!hosts.is_empty(), "{}: no hosts", config.display());
        let known_hosts = self.dir.join("known_hosts");
        fs::write(&known_hosts, known)
            .with_context(|| format!("writing {}", known_hosts.display()))?;
        Ok(Hosts {
            config,
            hosts,
            known_hosts,
        })
    }
}

impl Hosts {
    /// `ssh` (OpenSSH) to `host` as `user`, host key checked against the lab's known_hosts,
    /// no user config, no agent, no prompts.
    pub fn ssh(&self, host: &Host, user: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(&host.key)
            .arg("-p")
            .arg(host.port.to_string())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "ConnectTimeout=30",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
            ])
            .arg(format!("{user}@{}", host.address));
        cmd
    }

    /// The hosts checked after a run: the first, the middle and the last.
    pub fn sample(&self) -> Vec<&Host> {
        let n = self.hosts.len();
        let mut picked = vec![0, n / 2, n - 1];
        picked.dedup();
        picked.into_iter().map(|i| &self.hosts[i]).collect()
    }

    /// Logs in to each sampled host as `foundry` with K and runs verify.sh: the user,
    /// `sudo -n true`, the sudoers file, the key, the packages and the host name. Fails
    /// with what is missing on which host. `run` names the run checked (`first`, `second`).
    pub async fn verify(&self, dir: &Path, run: &str) -> Result<()> {
        let script = dir.join("verify.sh");
        fs::write(&script, VERIFY_SH).with_context(|| format!("writing {}", script.display()))?;
        let mut failures = Vec::new();
        for host in self.sample() {
            let check = self.verify_host(host, &script, run).await?;
            if !(check.status.success() && check.stdout.trim_end().ends_with("verified")) {
                failures.push(format!(
                    "{} ({}): {}",
                    host.name,
                    host.address,
                    tail(&format!("{}\n{}", check.stdout, check.stderr), 20)
                ));
            }
        }
        if !failures.is_empty() {
            bail!(
                "after the {run} run, the work is not all there:\n{}",
                failures.join("\n")
            );
        }
        Ok(())
    }

    /// Before any tool ran: the check must fail on the first host, or it proves nothing.
    pub async fn expect_unconfigured(&self, dir: &Path) -> Result<()> {
        let script = dir.join("verify.sh");
        fs::write(&script, VERIFY_SH).with_context(|| format!("writing {}", script.display()))?;
        let host = &self.hosts[0];
        let run = self.verify_host(host, &script, "before").await?;
        ensure!(
            !run.status.success(),
            "{} ({}) passes the check before any tool ran: the lab is not fresh",
            host.name,
            host.address
        );
        Ok(())
    }

    /// verify.sh on `host` as foundry, whatever its outcome.
    pub async fn verify_host(
        &self,
        host: &Host,
        script: &Path,
        label: &str,
    ) -> Result<child::Finished> {
        let mut cmd = self.ssh(host, "foundry");
        cmd.arg(remote_command(&[
            "sh",
            "-s",
            "--",
            &host.name,
            &host.public_key,
        ])?);
        let name = format!("verify-{label}-{}", host.name);
        child::run(cmd, &name, script_dir(script), VERIFY_TIMEOUT, Some(script)).await
    }
}

fn script_dir(script: &Path) -> &Path {
    script.parent().unwrap_or(Path::new("."))
}

/// One remote command line for ssh, each word quoted for the remote shell.
pub fn remote_command(words: &[&str]) -> Result<String> {
    shlex::try_join(words.iter().copied())
        .map_err(|e| anyhow::anyhow!("quoting a remote command {words:?}: {e}"))
}
