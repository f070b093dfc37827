//! What a person sees while `cluster up` runs: the coordinator's progress, read from its log
//! (steps done of planned, the ledger's epsilon of the budget of the dataset closest to its
//! budget). On a terminal an indicatif bar with steps/s and ETA; otherwise a plain line
//! every tenth of the plan.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufRead, BufReader, Seek};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Follows a coordinator's log until stopped.
pub(crate) struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The value of `key=` in a tracing line (plain format, no colours).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

impl Progress {
    /// Starts following `log`.
    pub(crate) fn follow(log: PathBuf) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || run(log, flag));
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An indicatif bar with `template`, drawn on stderr when it is a terminal and hidden
/// otherwise (the callers then print plain lines of their own).
pub(crate) fn stderr_bar(template: &str) -> ProgressBar {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = ProgressBar::with_draw_target(
        None,
        if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

fn run(log: PathBuf, stop: Arc<AtomicBool>) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = stderr_bar("{spinner} step {pos}/{len} [{bar:30}] {msg} {per_sec} ETA {eta}");
    bar.set_message("waiting for the nodes to join");
    let mut offset = 0u64;
    let mut epsilon = String::from("epsilon -");
    let mut printed = 0u64;
    loop {
        let done = stop.load(Ordering::Relaxed);
        if let Ok(mut file) = std::fs::File::open(&log) {
            if file.seek(std::io::SeekFrom::Start(offset)).is_ok() {
                let mut reader = BufReader::new(file);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if !line.ends_with('\n') {
                        break; // a line still being written: read it whole next time
                    }
                    offset += line.len() as u64;
                    if line.contains("privacy spent") {
                        if let (Some(e), Some(b)) =
                            (field(&line, "epsilon"), field(&line, "budget"))
                        {
                            let e: f64 = e.parse().unwrap_or(f64::NAN);
                            epsilon = format!("epsilon {e:.3} of {b}");
                            bar.set_message(epsilon.clone());
                        }
                    } else if line.contains("step done") {
                        let step = field(&line, "step").and_then(|s| s.parse::<u64>().ok());
                        let of = field(&line, "of").and_then(|s| s.parse::<u64>().ok());
                        if let (Some(step), Some(of)) = (step, of) {
                            bar.set_length(of);
                            bar.set_position(step);
                            // Without a terminal, a plain line every tenth of the plan.
                            if !terminal && (step == of || step >= printed + of.div_ceil(10)) {
                                printed = step;
                                eprintln!("cluster: step {step}/{of}, {epsilon}");
                            }
                        }
                    }
                    line.clear();
                }
            }
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_of_a_tracing_line() {
        let line = "2026-11-29T05:36:51Z  INFO bastion_actors::supervisor: step done seconds=0.5 step=12 of=48\n";
        assert_eq!(field(line, "step"), Some("12"));
        assert_eq!(field(line, "of"), Some("48"));
        assert_eq!(field(line, "epsilon"), None);
    }
}
