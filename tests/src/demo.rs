//! `sidelight demo` as a newcomer starts it: the real binary, every port its own, its
//! stdout read line by line so that a test can take the URLs and commands it prints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::sidelight_bin;

/// A running demo, stopped with Ctrl-C (SIGINT) when dropped.
pub struct DemoProcess {
    child: Child,
    /// Every line it has printed so far, as read by [`DemoProcess::read_until`].
    pub lines: Vec<String>,
    rx: Receiver<String>,
}

impl DemoProcess {
    /// Starts `sidelight demo` on ephemeral ports at 100 requests a second, with its
    /// state (audit log, surrogates, config) in `state`.
    pub fn start(state: &Path) -> Self {
        Self::start_in(Some(state))
    }

    /// Like [`DemoProcess::start`]; without `state`, the demo picks its own fresh state
    /// directory, as a newcomer's first run does.
    pub fn start_in(state: Option<&Path>) -> Self {
        let mut command = Command::new(sidelight_bin());
        command
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--model-listen", "127.0.0.1:0", "--rate", "100"]);
        if let Some(state) = state {
            command.arg("--state-dir").arg(state);
        }
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines: Vec::new(),
            rx,
        }
    }

    /// Reads lines until one satisfies `done`; fails saying it did not print `what`
    /// when no line comes for `patience`.
    pub fn read_until(&mut self, what: &str, patience: Duration, done: impl Fn(&str) -> bool) {
        while !self.lines.iter().any(|l| done(l)) {
            let line = self
                .rx
                .recv_timeout(patience)
                .unwrap_or_else(|_| panic!("the demo did not print {what}: {:#?}", self.lines));
            self.lines.push(line);
        }
    }

    /// The rest of the first line (trimmed) that starts with `label`, leading spaces
    /// aside: a URL, the token, a command.
    pub fn after(&self, label: &str) -> String {
        self.lines
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no `{label}` line in {:#?}", self.lines))
    }

    /// Sends Ctrl-C and waits up to `patience` for the exit: its status (`None` if it
    /// did not stop) and the lines printed since the last read.
    pub fn interrupt(&mut self, patience: Duration) -> (Option<ExitStatus>, Vec<String>) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + patience;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends with the pipe, and the channel with it.
        let mut rest = Vec::new();
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(2)) {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.interrupt(Duration::from_secs(15)).0.is_none() {
                let _ = self.child.kill();
            }
        }
    }
}
