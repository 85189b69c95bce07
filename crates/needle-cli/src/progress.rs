//! Progress bars on stderr (indicatif). They draw only when stderr is a terminal, so scripts,
//! pipes and tests see none of them.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` records, labelled `what`.
pub fn records(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:>10} [{bar:40.cyan/blue}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
    )
    .expect("the progress template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
