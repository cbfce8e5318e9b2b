//! The line editor: what the user types at the terminal, pure.
//!
//! * [`keys`]: raw-mode terminal bytes as [`Key`]s ([`KeyParser`], time passed in).
//! * [`line`]: the text and its cursor, edited by grapheme cluster, bounded.
//! * [`history`]: the lines sent, bounded, kept in a private file across runs.
//! * [`complete`]: Tab completion (common prefix, then a cycle).

pub mod complete;
pub mod history;
pub mod keys;
pub mod line;

pub use history::History;
pub use keys::{Key, KeyParser};
pub use line::{Line, MAX_LINE_BYTES};
