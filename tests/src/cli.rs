//! Running the `sidelight` command line once and reading what it did.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sidelight_bin;

/// What one run of the command did.
pub struct CliRun {
    /// The exit code; `None` when a signal ended it (or [`Cli::timeout`] did).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Whether it was still running at its [`Cli::timeout`] and was killed.
    pub timed_out: bool,
}

impl CliRun {
    /// Stdout then stderr, for a check that does not care which one said it.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

// An assertion message shows everything the command said, unescaped, so that a failure
// reads like the terminal would have.
impl std::fmt::Display for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.timed_out) {
            (_, true) => writeln!(f, "sidelight timed out and was killed")?,
            (Some(code), false) => writeln!(f, "sidelight exited {code}")?,
            (None, false) => writeln!(f, "sidelight was ended by a signal")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

impl std::fmt::Debug for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// One `sidelight` invocation, built up and then [run](Cli::run).
///
/// It starts from a clean slate of Sidelight's own settings: `RUST_LOG` and every
/// `SIDELIGHT_…` variable of the test process are removed, so that what the command sees
/// is what the test gives it (and a developer's shell cannot change an outcome).
#[must_use]
pub struct Cli {
    wrapper: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

/// `sidelight ARGS…`, to be run with [`Cli::run`] or [`Cli::run_async`].
pub fn cli<I, S>(args: I) -> Cli
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Cli {
        wrapper: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        clear_env: false,
        stdin: None,
        timeout: None,
    }
    .args(args)
}

/// Runs `sidelight ARGS…` to the end.
pub fn run_cli(args: &[&str]) -> CliRun {
    cli(args).run()
}

impl Cli {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes a variable the test process (or an earlier [`Cli::env`]) set.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts from an empty environment (plus `PATH`), not the test process's.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// What the command reads on stdin (otherwise it reads end of file at once).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs the command as the last argument of `wrapper` (e.g. `unshare …`), which
    /// must exec it.
    pub fn via(mut self, wrapper: &[String]) -> Self {
        self.wrapper = wrapper.iter().map(OsString::from).collect();
        self
    }

    /// Kills the command if it is still running after `limit`, for one that might
    /// otherwise serve forever; [`CliRun::timed_out`] then says so.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    fn command(&self) -> Command {
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(sidelight_bin());
                c
            }
            None => Command::new(sidelight_bin()),
        };
        command.args(&self.args);
        if self.clear_env {
            command
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        } else {
            command.env_remove("RUST_LOG");
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("SIDELIGHT_") {
                    command.env_remove(key);
                }
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs the command to the end (or its timeout), blocking this thread.
    pub fn run(self) -> CliRun {
        let mut child = self.command().spawn().expect("cannot start sidelight");
        // Pipes are fed and drained on threads of their own, so that a command that
        // writes a lot before reading its input (or the other way round) cannot stall.
        let input = child.stdin.take().map(|mut pipe| {
            let bytes = self.stdin.clone().unwrap_or_default();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let mut timed_out = false;
        let status = match self.timeout {
            None => child.wait().unwrap(),
            Some(limit) => {
                let deadline = Instant::now() + limit;
                loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break status;
                    }
                    if Instant::now() >= deadline {
                        timed_out = true;
                        let _ = child.kill();
                        break child.wait().unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        if let Some(input) = input {
            let _ = input.join();
        }
        CliRun {
            code: status.code(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            timed_out,
        }
    }

    /// Runs the command without blocking the runtime, for a test whose servers (model,
    /// proxy in process) answer the command on this same runtime.
    pub async fn run_async(self) -> CliRun {
        assert!(self.timeout.is_none(), "run_async has no timeout");
        let mut command = tokio::process::Command::from(self.command());
        command.kill_on_drop(true);
        let mut child = command.spawn().expect("cannot start sidelight");
        if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), self.stdin.clone()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = pipe.write_all(&bytes).await;
            });
        }
        let output = child.wait_with_output().await.unwrap();
        CliRun {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            timed_out: false,
        }
    }
}
