//! Progress bars for long steps. indicatif hides them when stderr is not a terminal, so
//! piped and `--json` output stays clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar that shows items per second and the time left.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar labelled `label`, waiting for its total.
    pub fn new(label: &str) -> Self {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        Self(bar)
    }

    /// A spinner for a step with no count, such as a download.
    pub fn spinner(label: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(bar)
    }

    /// Shows `message` after the bar: the latest loss, say.
    pub fn set_message(&self, message: String) {
        self.0.set_message(message);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl racm3::data::Progress for Bar {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}
