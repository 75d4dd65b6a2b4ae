//! The limits a config file must stay within: far above any real config,
//! far below what would cost hawkey time or memory (alias bombs, deep
//! nesting, huge documents). Checked by serde-saphyr while it reads.
//!
//! Its own module because both `schema` (which sets them as serde-saphyr's
//! budget) and `diagnostics` (which words a breach) read them.

pub(crate) const EVENTS: usize = 200_000;
pub(crate) const ALIASES: usize = 1_000;
pub(crate) const ANCHORS: usize = 1_000;
pub(crate) const DEPTH: usize = 32;
pub(crate) const NODES: usize = 100_000;
pub(crate) const SCALAR_BYTES: usize = 1024 * 1024;
/// An alias storm: at least this many aliases, and more than
/// `PER_ANCHOR` for each anchor defined.
pub(crate) const STORM_ALIASES: usize = 100;
pub(crate) const PER_ANCHOR: usize = 10;
