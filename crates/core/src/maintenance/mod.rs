//! Maintenance: deciding which snapshots to keep. Destructive steps are
//! planned first, as values that can be printed and tested, then executed.

pub mod forget;
pub mod prune;
pub mod repair;
