//! The line editor: what the user types at the terminal, pure.
//!
//! [`keys`] turns raw-mode terminal bytes into [`Key`]s.

pub mod keys;

pub use keys::{Key, KeyParser};
