//! Running a command whose standard output is a stream: standard input
//! from /dev/null (a dump must never wait for a password typed at a
//! prompt), standard error collected apart (its end is kept for the error
//! message), and its own process group, so that stopping it also stops a
//! pipeline it started (`mariadb-dump shop | gzip`).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// How much of a failed command's standard error its message keeps: the
/// end, where the reason usually is.
const STDERR_KEPT: usize = 4096;

/// How long to wait for the standard error pipe to close once the command
/// and its process group are gone (a daemon it started in a session of its
/// own may hold it for ever).
const STDERR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A command to run: a program and its arguments, never through a shell
/// unless it was given as one ([`CommandSpec::shell`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Added to the environment of the command.
    pub env: Vec<(OsString, OsString)>,
    /// How the command is named in messages.
    pub display: String,
}

impl CommandSpec {
    /// `program` with `args`, run directly.
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> CommandSpec {
        let program = program.into();
        let display = std::iter::once(&program)
            .chain(&args)
            .map(|a| shell_quoted(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        CommandSpec {
            program,
            args,
            env: Vec::new(),
            display,
        }
    }

    /// A shell command line, run by `/bin/sh -c`.
    pub fn shell(line: &str) -> CommandSpec {
        CommandSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), line.into()],
            env: Vec::new(),
            display: line.to_string(),
        }
    }

    /// Start the command with its standard output piped to us.
    pub fn spawn(&self) -> io::Result<Running> {
        self.spawn_piped(false, true)
    }

    /// Start the command with its standard input piped from us and its
    /// standard output discarded (a client restoring a dump).
    pub fn spawn_feeding(&self) -> io::Result<Running> {
        self.spawn_piped(true, false)
    }

    fn spawn_piped(&self, input: bool, output: bool) -> io::Result<Running> {
        let pipe_or_null = |piped: bool| if piped { Stdio::piped() } else { Stdio::null() };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(pipe_or_null(input))
            .stdout(pipe_or_null(output))
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of
        // ours. The command dies with the thread that started it, so a
        // backup killed with SIGKILL does not leave a dump running (which
        // would then write into a closed pipe, or hang on a lock).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id() as i32;
        lock_running().push(pid);
        watch_interrupts();
        note_exit(pid);
        let stderr = child.stderr.take().map(|mut err| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut tail = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * STDERR_KEPT {
                        tail.drain(..tail.len() - STDERR_KEPT);
                    }
                }
                let _ = tx.send(tail);
            });
            rx
        });
        Ok(Running {
            cut: false,
            last_output: std::time::Instant::now(),
            stdout: child.stdout.take(),
            stdin: child.stdin.take(),
            child,
            stderr,
            pid,
        })
    }

    /// Run to completion and return its standard output (for short
    /// commands such as listing databases).
    pub fn output(&self) -> Result<Vec<u8>, String> {
        let mut running = self
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.to_string_lossy()))?;
        let mut out = Vec::new();
        let read = match running.stdout() {
            Some(mut stdout) => stdout.read_to_end(&mut out),
            None => Ok(0),
        };
        let finished = running.finish();
        finished?;
        read.map_err(|e| format!("cannot read the output of `{}`: {e}", self.display))?;
        Ok(out)
    }
}

impl fmt::Display for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Process groups of the commands running now, so that an interrupted
/// backup can stop them ([`stop_all`]).
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn lock_running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Note when a command's process exits (without reaping it), so that a
/// reader of its output can tell a pipe held open by what it left behind
/// from a command still at work.
fn note_exit(pid: i32) {
    std::thread::spawn(move || {
        // SAFETY: waitid(2) with WNOWAIT only waits for the exit of our own
        // child, without reaping it; `info` is a local buffer.
        let exited = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            ) == 0
        };
        if exited {
            lock_exited().push((pid, std::time::Instant::now()));
        }
    });
}

/// Commands that exited, and when ([`note_exit`]).
static EXITED: Mutex<Vec<(i32, std::time::Instant)>> = Mutex::new(Vec::new());

fn lock_exited() -> std::sync::MutexGuard<'static, Vec<(i32, std::time::Instant)>> {
    EXITED.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long what a command left running may go on after it exited.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Stop the running commands when the process is asked to stop: they may
/// block us in a read (a dump, a client talking to a stuck server) where
/// no interruption check is reached. One watcher for the process.
fn watch_interrupts() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| loop {
            if crate::interrupt::requested() {
                stop_all();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
    });
}

/// Stop every command started by [`CommandSpec::spawn`] that still runs,
/// with its pipeline.
pub fn stop_all() {
    for pid in lock_running().iter() {
        // SAFETY: kill(2) on a process group we created; no memory involved.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// Reads a command's standard output without blocking for ever: it waits
/// in slices of 100 ms, so that a stop asked of the process (Ctrl-C,
/// SIGTERM) is honoured even when nothing is written, and it ends the
/// output once the command has exited and nothing came for
/// a second: the pipe is then held by something the command left
/// running (`setsid daemon &`), which is stopped if it is in the command's
/// group, and the output counts as cut short.
pub struct OutputReader<'a> {
    stdout: &'a mut ChildStdout,
    pid: i32,
    cut: &'a mut bool,
    /// When output last came (or the command started).
    last_output: &'a mut std::time::Instant,
}

/// How long one wait for output lasts before checking for a stop.
const POLL: i32 = 100;

impl Read for OutputReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = self.stdout.as_raw_fd();
        loop {
            if crate::interrupt::requested() {
                // Not ErrorKind::Interrupted, which readers retry.
                return Err(io::Error::other("stopped: the process was interrupted"));
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one valid descriptor we own.
            let ready = unsafe { libc::poll(&mut pfd, 1, POLL) };
            if ready > 0 {
                *self.last_output = std::time::Instant::now();
                return self.stdout.read(buf);
            }
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
                continue;
            }
            let exited = lock_exited()
                .iter()
                .find(|(p, _)| *p == self.pid)
                .map(|(_, at)| *at);
            let idle = self.last_output.elapsed() >= LEFTOVER_GRACE;
            if idle && exited.is_some_and(|at| at.elapsed() >= LEFTOVER_GRACE) {
                // SAFETY: kill(2) on the group we created (still running).
                unsafe { libc::kill(-self.pid, libc::SIGKILL) };
                *self.cut = true;
                return Ok(0);
            }
        }
    }
}

/// A started command.
pub struct Running {
    child: Child,
    /// The output was ended by us: what the command left behind held it
    /// open after it exited ([`OutputReader`]).
    cut: bool,
    last_output: std::time::Instant,
    stdout: Option<ChildStdout>,
    stdin: Option<ChildStdin>,
    /// The end of its standard error, once the pipe is closed.
    stderr: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    pid: i32,
}

impl Running {
    /// The command's standard output, if it was started with
    /// [`CommandSpec::spawn`]: read until its end, an interruption, or
    /// until it stays idle after the command exited.
    pub fn stdout(&mut self) -> Option<OutputReader<'_>> {
        Some(OutputReader {
            stdout: self.stdout.as_mut()?,
            pid: self.pid,
            cut: &mut self.cut,
            last_output: &mut self.last_output,
        })
    }

    /// The command's standard input, if it was started with
    /// [`CommandSpec::spawn_feeding`].
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    /// Stop the command and whatever it started.
    pub fn kill(&mut self) {
        // SAFETY: as in stop_all.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }

    /// Wait for the command; `Err` names how it failed, with the end of
    /// its standard error.
    pub fn finish(self) -> Result<(), String> {
        self.finish_with_stderr().0
    }

    /// Wait for the command: how it ended, and the end of what it wrote to
    /// its standard error (warnings worth showing even on success).
    pub fn finish_with_stderr(mut self) -> (Result<(), String>, String) {
        // Close our ends first: a command still writing gets SIGPIPE
        // instead of blocking forever on a pipe nobody reads, and one
        // reading sees the end of its input.
        drop(self.stdout.take());
        drop(self.stdin.take());
        let status = self.child.wait();
        // The command is over: whatever it left running in its process
        // group (`sleep 300 &`) goes too, or it would hold our pipes open.
        {
            let mut running = lock_running();
            // SAFETY: kill(2) on the group we created; its leader is
            // reaped but the group is ours until we forget it here.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            running.retain(|&p| p != self.pid);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|rx| rx.recv_timeout(STDERR_WAIT).ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&stderr).trim().to_string();
        let status = match status {
            Ok(s) => s,
            Err(e) => return (Err(format!("cannot wait for the command: {e}")), text),
        };
        lock_exited().retain(|(p, _)| *p != self.pid);
        if self.cut {
            return (
                Err(format!(
                    "exited, but left processes running that kept its output open without writing for {} s; \
                     those in its process group were stopped, and what they would still have written is missing \
                     (redirect the output of background commands)",
                    LEFTOVER_GRACE.as_secs()
                )),
                text,
            );
        }
        if status.success() {
            return (Ok(()), text);
        }
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
            _ => "failed".to_string(),
        };
        (Err(with_stderr(how, &stderr)), text)
    }
}

/// `word` as a shell would need it, for messages: quoted only when needed.
fn shell_quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./,:@%+".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn with_stderr(how: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("{how} (nothing on its standard error)")
    } else {
        let start = text.len().saturating_sub(STDERR_KEPT);
        let start = (start..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!("{how}: {}", &text[start..])
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_is_named_with_its_status_and_stderr() {
        let err = CommandSpec::shell("echo partial; echo 'no such table' >&2; exit 3")
            .output()
            .unwrap_err();
        assert!(err.contains("exited with status 3"), "{err}");
        assert!(err.contains("no such table"), "{err}");
    }

    #[test]
    fn a_killed_command_names_the_signal() {
        let err = CommandSpec::shell("kill -9 $$").output().unwrap_err();
        assert!(err.contains("signal 9 (SIGKILL)"), "{err}");
    }

    #[test]
    fn output_of_a_direct_command() {
        let spec = CommandSpec::new("printf", vec!["%s".into(), "a b".into()]);
        assert_eq!(spec.output().unwrap(), b"a b");
        assert_eq!(spec.to_string(), "printf %s 'a b'");
    }
}
